/**
 * What an image source is (the interfaces); one module per kind beside this
 * file implements SourceKind, and ../source.ts is the ordered table. Kept
 * apart from the table so that the kinds import no module that imports them.
 */
import type { FetchLimits } from "../../net/fetch.ts";

export interface ImageSource {
  kind: "local" | "http" | "null";
  /** For logs and errors; never contains credentials. */
  display: string;
  /** Bytes as stored (compressed size for compressed images); null if unknown. */
  size: number | null;
  /**
   * Default image properties that came with the image (a local image's
   * NAME.meta, see ./meta.ts), below img_properties and inst_properties.
   */
  properties?: Record<string, string>;
  /** Where `properties` came from, for the log. */
  propertiesFrom?: string;
  /** local: the image file's real path; http: the URL as given (IMAGE_VERIFY looks for sums files next to it). */
  path?: string;
  url?: string;
  open(signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /**
   * Positional reads instead of one stream (qcow2 images). A local file needs
   * none: its opened stream is file-backed (../disk/input.ts). http(s) uses
   * Range requests.
   */
  ranges?(signal?: AbortSignal): Promise<RangeReader>;
}

/** Positional reads of an image as stored. */
export interface RangeReader {
  /** Bytes as stored. */
  readonly size: number;
  /** Exactly `len` bytes at `pos` (pos + len ≤ size); anything else is an SnfError. */
  read(pos: number, len: number): Promise<Uint8Array>;
  /** Ends every read in flight and releases the file or connection. */
  close(): Promise<void>;
}

export interface ResolveOptions {
  imageDir: string;
  /** img_format, used for the legacy NAME.FORMAT file names. */
  format: string;
  /** Redirect and stall limits for http(s) images (default: the config defaults). */
  http?: FetchLimits;
  /** The caller's abort (SIGTERM), for the checks made while resolving. */
  signal?: AbortSignal;
}

export interface SourceKind {
  kind: ImageSource["kind"];
  probe(imgId: string): boolean;
  resolve(imgId: string, o: ResolveOptions): Promise<ImageSource>;
}

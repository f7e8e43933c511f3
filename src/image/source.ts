/**
 * Where an image comes from. One module per kind in ./sources/; SOURCES is
 * the ordered table: the first whose probe accepts the img_id resolves it
 * (local accepts any id without ':' so it comes last).
 *
 * Resolving checks everything that can fail before the disk is touched
 * (file exists inside IMAGE_DIR and is readable, URL answers 2xx).
 */
import { SnfError } from "../errors.ts";
import type { FetchLimits } from "../net/fetch.ts";
import { nullSource } from "./sources/null.ts";
import { httpSource } from "./sources/http.ts";
import { localSource } from "./sources/local.ts";

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

export const SOURCES: readonly SourceKind[] = [nullSource, httpSource, localSource];

export async function resolveImageSource(imgId: string, o: ResolveOptions): Promise<ImageSource> {
  const id = imgId.trim();
  if (!id) throw new SnfError("img_id is empty");
  for (const s of SOURCES) if (s.probe(id)) return s.resolve(id, o);
  const scheme = id.slice(0, id.indexOf(":"));
  throw new SnfError(`unsupported image source "${scheme}:" (supported: null, local://NAME or NAME, http://, https://)`);
}

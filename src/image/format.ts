/**
 * Image formats on the host side: compression sniffed by magic bytes (never
 * by name) and undone by a child process (gzip/xz/zstd -dc, no shell), qcow2
 * recognised by its magic and converted by ./qcow2.ts, and the 1 MiB MBR prefix that turns an extdump/ntfsdump filesystem dump into a
 * bootable disk.
 */
import fs from "node:fs";
import { SnfError, errorMessage, causeOf } from "../errors.ts";
import { onCleanup } from "../cleanup.ts";
import type { ImageSource, RangeReader } from "./sources/kind.ts";
import { fileBacking, type ImageChunk } from "../disk/input.ts";
import type { ImageFormat } from "../protocol.ts";
import { isQcow2, openQcow2, type Qcow2Header } from "./qcow2.ts";
import { fdRanges } from "./sources/read-stream.ts";

export type Compression = "gzip" | "xz" | "zstd";

const MAGIC: [Compression, number[]][] = [
  ["gzip", [0x1f, 0x8b]],
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]],
];
/** Bytes detectCompression needs to decide. */
export const MAGIC_BYTES = 6;

export async function detectCompression(head: Uint8Array): Promise<Compression | null> {
  for (const [kind, m] of MAGIC) if (m.every((b, i) => head[i] === b)) return kind;
  return null;
}

/** Reads the first n bytes (fewer if the stream is shorter) without losing them. */
export async function peek(
  stream: ReadableStream<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const got: Uint8Array[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await reader.read();
    if (r.done) {
      done = true;
      break;
    }
    got.push(r.value);
    len += r.value.length;
  }
  const head = new Uint8Array(len);
  let o = 0;
  for (const g of got) head.set(g, (o += g.length) - g.length);
  let first = true;
  const out = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        if (first) {
          first = false;
          if (head.length) return c.enqueue(head);
        }
        if (done) return c.close();
        try {
          const r = await reader.read();
          if (r.done) c.close();
          else c.enqueue(r.value);
        } catch (e) {
          c.error(e);
        }
      },
      cancel: (why) => reader.cancel(why),
    },
    { highWaterMark: 0 },
  );
  return { head: head.subarray(0, Math.min(n, len)), stream: out };
}

/**
 * Pipes `stream` through `<tool> -dc`. The output stream errors if the tool
 * fails (its first stderr line names why); cancelling it kills the tool.
 */
export function decompress(stream: ReadableStream<Uint8Array>, kind: Compression): ReadableStream<Uint8Array> {
  // A local file goes to the tool as its stdin fd: no copy through JS.
  // A tapped file (IMAGE_VERIFY hashes it) is read through JS so every byte is seen.
  const backing = fileBacking(stream);
  const file = backing?.tap ? null : backing;
  const argv = [kind, "-dc"];
  let proc: ReturnType<typeof Bun.spawn<"pipe", "pipe", "pipe">>;
  try {
    // env: process.env explicitly: Bun's default is the environment at start, OSP_* included
    proc = Bun.spawn(argv, { stdin: (file ? file.fd : "pipe") as "pipe", stdout: "pipe", stderr: "pipe", env: process.env });
  } catch (e) {
    throw new SnfError(`cannot run ${kind} to decompress the image (${errorMessage(e)})`);
  }
  const undo = onCleanup(`kill ${kind}`, () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  });
  let inputError: unknown = null;
  const inReader = stream.getReader();
  const pump = (async () => {
    if (file) return void (await inReader.cancel().catch(() => {})); // the child has its own copy of the fd
    try {
      for (;;) {
        const r = await inReader.read();
        if (r.done) break;
        proc.stdin.write(r.value);
        await proc.stdin.flush();
      }
    } catch (e) {
      inputError ??= e;
      proc.kill("SIGKILL");
    } finally {
      try {
        await proc.stdin.end();
      } catch {
        /* the tool died; its exit status tells why */
      }
    }
  })();
  const stderr = new Response(proc.stderr).text();
  const outReader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const finish = async () => {
    const [code] = await Promise.all([proc.exited, pump]);
    undo();
    if (inputError) throw inputError instanceof SnfError ? inputError : new SnfError(`reading the image failed: ${errorMessage(inputError)}`);
    if (code !== 0) {
      const why = (await stderr).trim().split("\n")[0] || `exit status ${code}`;
      throw new SnfError(`${kind} decompression of the image failed: ${why}`);
    }
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        try {
          const r = await outReader.read();
          if (!r.done) return c.enqueue(r.value);
          await finish();
          c.close();
        } catch (e) {
          c.error(e instanceof SnfError ? e : new SnfError(`${kind} decompression of the image failed: ${errorMessage(e)}`));
        }
      },
      async cancel(why) {
        proc.kill("SIGKILL");
        await inReader.cancel(why).catch(() => {});
        await proc.exited;
        undo();
      },
    },
    { highWaterMark: 2 },
  );
}

export interface OpenedImage {
  /** The raw disk bytes (ZeroRuns too, for qcow2). */
  stream: ReadableStream<ImageChunk>;
  /** Bytes the writer should expect: the source size, the qcow2 virtual size, or null when compressed. */
  size: number | null;
  compression: Compression | null;
  /** Set when the image is qcow2 (by its magic, whatever img_format said). */
  qcow2: Qcow2Header | null;
}

const notQcow2 = (source: ImageSource, what: string) =>
  new SnfError(`image ${source.display} is ${what}, not qcow2 as img_format=qcow2 says`);

/**
 * Opens a source, undoes any compression and converts qcow2 (recognised by
 * its magic; img_format=qcow2 makes anything else an error). `size` is the
 * byte count the writer should expect.
 *
 * An image that yields no byte at all (a 0-byte file, an empty body, a
 * compressed stream of nothing, a qcow2 of virtual size 0) is refused here,
 * before anything is written: deploying it would leave the disk's previous
 * contents to be customized.
 */
export async function openImage(source: ImageSource, signal?: AbortSignal, format?: ImageFormat): Promise<OpenedImage> {
  const raw = await source.open(signal);
  const empty = async (stream: ReadableStream<ImageChunk>, what: string): Promise<never> => {
    await stream.cancel().catch(() => {});
    throw new SnfError(`image ${source.display} is empty (${what} 0 bytes): refusing to deploy it; the disk was not touched`);
  };
  const file = fileBacking(raw);
  let head: Uint8Array;
  let stream = raw;
  if (file) {
    // Sniff with a positional read and hand the untouched stream on, so that
    // writeImage (raw) or the decompressor (stdin = the fd) reads the file itself.
    head = new Uint8Array(MAGIC_BYTES);
    let n: number;
    try {
      n = fs.readSync(file.fd, head, 0, MAGIC_BYTES, 0);
    } catch (e) {
      await raw.cancel().catch(() => {});
      throw new SnfError(`reading the image failed: ${causeOf(e)}`);
    }
    head = head.subarray(0, n);
  } else ({ head, stream } = await peek(raw, MAGIC_BYTES));
  if (head.length === 0) return empty(stream, "it has");

  if (isQcow2(head)) {
    let ranges: RangeReader;
    if (file) ranges = fdRanges(file.fd, file.size, source.display, () => raw.cancel().catch(() => {}));
    else {
      await stream.cancel().catch(() => {});
      if (!source.ranges) throw new SnfError(`image ${source.display} is qcow2, which this source cannot read by ranges`);
      ranges = await source.ranges(signal);
    }
    const q = await openQcow2(ranges, source.display);
    if (q.header.virtualSize === 0) return empty(q.stream, "its qcow2 virtual size is");
    return { stream: q.stream, size: q.header.virtualSize, compression: null, qcow2: q.header };
  }
  const compression = await detectCompression(head);
  if (!compression) {
    if (format === "qcow2") {
      await stream.cancel().catch(() => {});
      throw notQcow2(source, "raw (no qcow2 magic)");
    }
    return { stream, size: source.size, compression, qcow2: null };
  }
  // Wait for the first decompressed bytes (or the tool's verdict) before the
  // writer, and the extdump/ntfsdump prefix the host writes, touch the disk.
  // qcow2 needs positional reads: inside a compressed stream it cannot be converted.
  const inner = await peek(decompress(stream, compression), 4);
  if (inner.head.length === 0) return empty(inner.stream, `its ${compression} stream holds`);
  if (isQcow2(inner.head) || format === "qcow2") {
    await inner.stream.cancel().catch(() => {});
    if (!isQcow2(inner.head)) throw notQcow2(source, `${compression}-compressed data without qcow2 magic`);
    throw new SnfError(`image ${source.display} is a qcow2 file inside ${compression} compression: decompress it first (qcow2 is read by ranges, not as a stream)`);
  }
  return { stream: inner.stream, size: null, compression, qcow2: null };
}

// ---------------------------------------------------------------------------
// extdump / ntfsdump prefix

export const MBR_BOOT_CODE = "/usr/lib/syslinux/mbr/mbr.bin";
export const PREFIX_BYTES = 1024 * 1024;
const SECTOR = 512;
const FIRST_SECTOR = PREFIX_BYTES / SECTOR; // 2048

/** LBA → CHS bytes as in an MBR entry, with the usual 255 heads × 63 sectors. */
function chs(lba: number): [number, number, number] {
  const H = 255;
  const S = 63;
  const c = Math.floor(lba / (H * S));
  if (c > 1023) return [0xfe, 0xff, 0xff];
  const h = Math.floor(lba / S) % H;
  const s = (lba % S) + 1;
  return [h, s | ((c >> 2) & 0xc0), c & 0xff];
}

/**
 * The image properties a format implies: extdump/ntfsdump are one filesystem
 * that the host puts behind its own MBR (mbrPrefix), so the family and the
 * root partition are known. Defaults below img_properties/inst_properties.
 */
export function hostProperties(format: ImageFormat): Record<string, string> {
  if (format === "extdump") return { OSFAMILY: "linux", ROOT_PARTITION: "1" };
  if (format === "ntfsdump") return { OSFAMILY: "windows", ROOT_PARTITION: "1" };
  return {};
}

/**
 * The 1 MiB written before an extdump/ntfsdump image: msdos label, one
 * bootable primary partition (type 0x83 or 0x07) starting at sector 2048 and,
 * as in the original, ending where the image ends (at the disk end when the
 * image size is unknown, e.g. compressed). Boot code: the first 440 bytes of
 * syslinux's mbr.bin, read at run time.
 */
export async function mbrPrefix(
  format: "extdump" | "ntfsdump",
  imageBytes: number | null,
  diskBytes: number,
  bootCode = MBR_BOOT_CODE,
): Promise<Uint8Array> {
  if (imageBytes !== null && PREFIX_BYTES + imageBytes > diskBytes) {
    throw new SnfError(`image (${imageBytes} bytes with its 1 MiB prefix) does not fit the ${diskBytes}-byte disk`);
  }
  const endByte = imageBytes === null ? diskBytes : PREFIX_BYTES + imageBytes;
  const sectors = Math.floor(endByte / SECTOR) - FIRST_SECTOR;
  if (sectors < 1) throw new SnfError(`disk of ${diskBytes} bytes is too small for an ${format} image`);
  if (FIRST_SECTOR + sectors > 2 ** 32) throw new SnfError(`${format} image or disk larger than 2 TiB: not possible with an msdos label`);
  let code: Uint8Array;
  try {
    code = new Uint8Array(fs.readFileSync(bootCode));
  } catch (e) {
    throw new SnfError(`cannot read the MBR boot code ${bootCode} (${causeOf(e)}; install syslinux-common)`);
  }
  if (code.length < 440) throw new SnfError(`MBR boot code ${bootCode} is shorter than 440 bytes`);
  const mbr = new Uint8Array(PREFIX_BYTES);
  const dv = new DataView(mbr.buffer);
  mbr.set(code.subarray(0, 440), 0);
  const sig = crypto.getRandomValues(new Uint8Array(4));
  if (sig.every((b) => b === 0)) sig[0] = 1;
  mbr.set(sig, 440); // disk identifier
  const e = 446;
  mbr[e] = 0x80; // bootable
  mbr.set(chs(FIRST_SECTOR), e + 1);
  mbr[e + 4] = format === "extdump" ? 0x83 : 0x07;
  mbr.set(chs(FIRST_SECTOR + sectors - 1), e + 5);
  dv.setUint32(e + 8, FIRST_SECTOR, true);
  dv.setUint32(e + 12, sectors, true);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}

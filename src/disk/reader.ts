/**
 * The `export` and `import` data paths. Export streams a whole disk to an fd
 * (stdout) with O_DIRECT 4 MiB reads, the next read overlapping the current
 * write, and writes the byte count to EXP_SIZE_FD first when given. Import is
 * stdin through the zero-aware writer.
 */
import fs from "node:fs";
import { SnfError, errorMessage, errnoOf, causeOf } from "../errors.ts";
import { onCleanup } from "../cleanup.ts";
import { allocAligned, O_CLOEXEC } from "./libc.ts";
import { statDisk } from "./target.ts";
import { writeImage, CHUNK, type WriteOptions, type WriteResult } from "./writer.ts";

function readAt(fd: number, buf: Uint8Array, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, 0, buf.length, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Writes all of buf to a (possibly non-blocking) pipe or file fd. */
async function writeOut(fd: number, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    try {
      off += await new Promise<number>((resolve, reject) =>
        fs.write(fd, buf, off, buf.length - off, null, (e, n) => (e ? reject(e) : resolve(n))),
      );
    } catch (e) {
      if (errnoOf(e) !== "EAGAIN") throw e;
      await Bun.sleep(2);
    }
  }
}

export interface ExportOptions {
  /** Ganeti's EXP_SIZE_FD: receives "<bytes>\n" before the data. */
  sizeFd?: number | null;
  signal?: AbortSignal;
}

/** Streams the whole disk at `diskPath` to `outFd`; returns the byte count. */
export async function exportDisk(diskPath: string, outFd: number, o: ExportOptions = {}): Promise<number> {
  const disk = await statDisk(diskPath);
  if (o.sizeFd != null) {
    try {
      fs.writeSync(o.sizeFd, `${disk.size}\n`);
    } catch (e) {
      throw new SnfError(`cannot write the export size to fd ${o.sizeFd} (${causeOf(e)})`);
    }
  }
  let fd: number;
  try {
    fd = fs.openSync(diskPath, fs.constants.O_RDONLY | O_CLOEXEC | fs.constants.O_DIRECT);
  } catch (e) {
    if (errnoOf(e) !== "EINVAL") throw new SnfError(`cannot open disk ${diskPath} (${causeOf(e)})`);
    fd = fs.openSync(diskPath, fs.constants.O_RDONLY | O_CLOEXEC);
  }
  const bufs = [allocAligned(CHUNK), allocAligned(CHUNK)];
  const close = () => {
    if (fd >= 0) fs.closeSync(fd);
    fd = -1;
    for (const b of bufs.splice(0)) b.free();
  };
  const undo = onCleanup(`close disk ${diskPath}`, close);
  try {
    let pos = 0;
    let cur = 0;
    let writing: Promise<void> = Promise.resolve();
    while (pos < disk.size) {
      if (o.signal?.aborted) throw new SnfError(`export interrupted: ${errorMessage(o.signal.reason)}`);
      const buf = bufs[cur]!.bytes;
      let n: number;
      try {
        n = await readAt(fd, buf, pos);
      } catch (e) {
        throw new SnfError(`reading disk ${diskPath} at ${pos} failed (${causeOf(e)})`);
      }
      if (n === 0) throw new SnfError(`disk ${diskPath} ended at ${pos} of ${disk.size} bytes`);
      n = Math.min(n, disk.size - pos);
      await writing; // the previous chunk is out; its buffer is free again
      writing = writeOut(outFd, buf.subarray(0, n)).catch((e) => {
        throw new SnfError(`writing the export stream failed (${causeOf(e)})`);
      });
      writing.catch(() => {});
      pos += n;
      cur ^= 1;
    }
    await writing;
    return pos;
  } finally {
    close();
    undo();
  }
}

/** import: the dump on `input` (stdin) onto the disk, zero-aware. */
export function importDisk(
  input: ReadableStream<Uint8Array>,
  diskPath: string,
  o: Omit<WriteOptions, "prefix" | "expectedSize"> = {},
): Promise<WriteResult> {
  return writeImage(input, diskPath, { ...o, expectedSize: null });
}

/**
 * A pull stream over an open file descriptor: 1 MiB reads on Bun's thread
 * pool, one read ahead of the consumer. Closes the fd at the end, on error
 * and on cancel.
 */
import fs from "node:fs";
import { SnfError, causeOf } from "../../errors.ts";
import type { RangeReader } from "./kind.ts";

const READ_CHUNK = 1024 * 1024;

export function fdStream(fd: number, close: () => void, signal?: AbortSignal): ReadableStream<Uint8Array> {
  let pos = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(c) {
        if (signal?.aborted) {
          close();
          c.error(signal.reason);
          return;
        }
        const buf = new Uint8Array(READ_CHUNK);
        return new Promise<void>((resolve) =>
          fs.read(fd, buf, 0, READ_CHUNK, pos, (err, n) => {
            if (err) {
              close();
              c.error(err);
            } else if (n === 0) {
              close();
              c.close();
            } else {
              pos += n;
              c.enqueue(n === READ_CHUNK ? buf : buf.subarray(0, n));
            }
            resolve();
          }),
        );
      },
      cancel() {
        close();
      },
    },
    { highWaterMark: 2 },
  );
}

/**
 * Positional reads over an open regular file (a local qcow2 image). `release`
 * closes the file; close() waits for the reads in flight first, so the fd is
 * never closed under a pending read.
 */
export function fdRanges(fd: number, size: number, name: string, release: () => Promise<void>): RangeReader {
  const inFlight = new Set<Promise<unknown>>();
  let closed = false;
  const readOnce = (buf: Uint8Array, off: number, len: number, pos: number) =>
    new Promise<number>((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
  return {
    size,
    read(pos, len) {
      if (closed) return Promise.reject(new SnfError(`image ${name}: read after close`));
      const p = (async () => {
        const buf = Buffer.allocUnsafe(len); // every byte is read into it below
        let got = 0;
        while (got < len) {
          let n: number;
          try {
            n = await readOnce(buf, got, len - got, pos + got);
          } catch (e) {
            throw new SnfError(`reading image ${name} failed: ${causeOf(e)}`);
          }
          if (n === 0) throw new SnfError(`image ${name} ended at ${pos + got} bytes, before ${pos + len} (did it shrink?)`);
          got += n;
        }
        return buf;
      })();
      inFlight.add(p);
      p.finally(() => inFlight.delete(p)).catch(() => {});
      return p;
    },
    async close() {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...inFlight]);
      await release();
    },
  };
}

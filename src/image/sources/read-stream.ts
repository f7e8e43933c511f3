/**
 * A pull stream over an open file descriptor: 1 MiB reads on Bun's thread
 * pool, one read ahead of the consumer. Closes the fd at the end, on error
 * and on cancel.
 */
import fs from "node:fs";

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

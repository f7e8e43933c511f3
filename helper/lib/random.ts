/**
 * Random bytes for the helper, always straight from the guest kernel
 * (/dev/urandom), never from a generator inside this process: a helper VM
 * resumed from a saved state starts with the same process memory as every
 * other resume of that state, so a user-space generator (BoringSSL's,
 * JavaScriptCore's) would hand two deployments the same machine-id. The
 * kernel's generator is reseeded with fresh host bytes after a resume
 * (lib/wake.ts) before anything random is made.
 */
import * as fs from "node:fs";

export function randomBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  const fd = fs.openSync("/dev/urandom", "r");
  try {
    let off = 0;
    while (off < n) {
      const got = fs.readSync(fd, b, off, n - off, null);
      if (got <= 0) throw new Error("short read from /dev/urandom");
      off += got;
    }
  } finally {
    fs.closeSync(fd);
  }
  return b;
}

/** An RFC 4122 version 4 UUID. */
export function randomUUID(): string {
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

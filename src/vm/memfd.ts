/**
 * Anonymous in-memory files (memfd_create(2) through bun:ffi): a secret handed
 * to a child as an inherited fd never touches a filesystem, and it vanishes
 * with the last process holding it, whatever kills that process.
 */
import { dlopen, FFIType } from "bun:ffi";
import fs from "node:fs";
import { SnfError } from "../errors.ts";

let memfdCreate: ((name: Buffer, flags: number) => number) | null = null;

/** A new memfd holding `data`, positioned at 0; the caller closes it. Not close-on-exec (for inheritance). */
export function memfdWith(name: string, data: string | Uint8Array): number {
  if (!memfdCreate) {
    try {
      const libc = dlopen("libc.so.6", { memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 } });
      memfdCreate = (n, f) => libc.symbols.memfd_create(n, f) as number;
    } catch (e) {
      throw new SnfError(`memfd_create unavailable: ${(e as Error).message}`);
    }
  }
  const fd = memfdCreate(Buffer.from(`${name}\0`), 0);
  if (fd < 0) throw new SnfError("memfd_create failed");
  try {
    const buf = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, off);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  return fd;
}

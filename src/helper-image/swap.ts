/**
 * Put a freshly built directory in place of another one atomically:
 * renameat2(RENAME_EXCHANGE) swaps the two in one step (running helper VMs
 * keep their open files), then the old tree, now at `fresh`, is removed by
 * the caller. Falls back to rename when the target does not exist.
 */
import { dlopen, FFIType } from "bun:ffi";
import fs from "node:fs";
import { SnfError } from "../errors.ts";

const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

let renameat2: ((a: number, b: Uint8Array, c: number, d: Uint8Array, e: number) => number) | null = null;

function libcRenameat2() {
  if (!renameat2) {
    const lib = dlopen("libc.so.6", {
      renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    });
    renameat2 = (a, b, c, d, e) => Number(lib.symbols.renameat2(a, b, c, d, e));
  }
  return renameat2!;
}

const cstr = (s: string) => new TextEncoder().encode(`${s}\0`);

/** After this, `target` holds what `fresh` held; `fresh` holds the old target (if any). */
export function swapDirs(fresh: string, target: string): void {
  if (!fs.existsSync(target)) {
    fs.renameSync(fresh, target);
    return;
  }
  const rc = libcRenameat2()(AT_FDCWD, cstr(fresh), AT_FDCWD, cstr(target), RENAME_EXCHANGE);
  if (rc !== 0) throw new SnfError(`cannot replace ${target} (renameat2 failed)`);
}

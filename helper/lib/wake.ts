/**
 * What a helper VM must do first when it wakes up from a saved state
 * (src/vm/snapshot.ts): every resume of one snapshot starts with the same
 * kernel random state and the clock of the moment it was saved.
 *  - reseed: mix fresh host bytes (params.seed) into the kernel's input pool
 *    and force the CRNG to reseed from it (RNDRESEEDCRNG), so that salts,
 *    machine-ids, UUIDs and temp names differ between deployments;
 *  - setClock: the host's time (params.now), for the timestamps the helper writes.
 * Both go through libc (bun:ffi): no tool start under emulation.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import * as fs from "node:fs";

/** _IO('R', 0x07) from <linux/random.h>. */
const RNDRESEEDCRNG = 0x5207;
const CLOCK_REALTIME = 0;

let libc: ReturnType<typeof open> | undefined;
function open() {
  return dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    clock_settime: { args: [FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  });
}
const lib = () => (libc ??= open());

export function reseed(seed: Uint8Array): void {
  if (seed.length < 32) throw new Error("reseeding needs at least 32 fresh bytes from the host");
  const fd = fs.openSync("/dev/urandom", "w");
  try {
    fs.writeSync(fd, seed);
    const r = lib().symbols.ioctl(fd, RNDRESEEDCRNG, 0);
    if (r !== 0) throw new Error("the kernel refused to reseed its random generator (RNDRESEEDCRNG)");
  } finally {
    fs.closeSync(fd);
  }
}

export function setClock(epochSec: number): void {
  if (!Number.isFinite(epochSec) || epochSec <= 0) return;
  const ts = new BigInt64Array([BigInt(Math.floor(epochSec)), 0n]);
  if (lib().symbols.clock_settime(CLOCK_REALTIME, ptr(ts)) !== 0) throw new Error("cannot set the helper's clock");
}

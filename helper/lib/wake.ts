/**
 * What a helper VM must do first when it wakes up from a saved state
 * (src/vm/snapshot.ts): every resume of one snapshot starts with the same
 * kernel random state and the clock of the moment it was saved.
 *  - reseed: mix fresh host bytes (params.seed) into the kernel's input pool
 *    and force the CRNG to reseed from it (RNDRESEEDCRNG), so that salts,
 *    machine-ids, UUIDs and temp names differ between deployments;
 *  - setClock: the host's time (params.now), for the timestamps the helper writes.
 * Both go through libc (bun:ffi), as does loadModule: no tool start under emulation.
 */
import { ptr } from "bun:ffi";
import * as fs from "node:fs";
import { libc } from "./libc.ts";

/** _IO('R', 0x07) from <linux/random.h>. */
const RNDRESEEDCRNG = 0x5207;
const CLOCK_REALTIME = 0;


export function reseed(seed: Uint8Array): void {
  if (seed.length < 32) throw new Error("reseeding needs at least 32 fresh bytes from the host");
  const fd = fs.openSync("/dev/urandom", "w");
  try {
    fs.writeSync(fd, seed);
    const r = libc().ioctl(fd, RNDRESEEDCRNG, 0);
    if (r !== 0) throw new Error("the kernel refused to reseed its random generator (RNDRESEEDCRNG)");
  } finally {
    fs.closeSync(fd);
  }
}

export function setClock(epochSec: number): void {
  if (!Number.isFinite(epochSec) || epochSec <= 0) return;
  const ts = new BigInt64Array([BigInt(Math.floor(epochSec)), 0n]);
  if (libc().clock_settime(CLOCK_REALTIME, ptr(ts)) !== 0) throw new Error("cannot set the helper's clock");
}

const SYS_FINIT_MODULE = 313; // x86_64

/**
 * Load a kernel module of the running kernel that has no dependencies (finit_module), found
 * through modules.dep. True when it is loaded (or already was); false to let the caller fall
 * back to modprobe.
 */
export function loadModule(name: string): boolean {
  try {
    const release = fs.readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    const base = `/lib/modules/${release}`;
    const line = fs
      .readFileSync(`${base}/modules.dep`, "utf8")
      .split("\n")
      .find((l) => l.slice(0, l.indexOf(":")).endsWith(`/${name}.ko`));
    if (!line || line.slice(line.indexOf(":") + 1).trim() !== "") return false; // unknown, or has dependencies
    const fd = fs.openSync(`${base}/${line.slice(0, line.indexOf(":"))}`, "r");
    try {
      const r = libc().syscall(SYS_FINIT_MODULE, fd, ptr(Buffer.from([0])), 0);
      return Number(r) === 0;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

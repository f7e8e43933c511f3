/**
 * Swap: mkswap a partition/disk (its fstab line: os/fstab.ts).
 */
import type { RunFn } from "./exec.ts";

/** mkswap the device; returns the new UUID. */
export async function makeSwap(run: RunFn, dev: string): Promise<string> {
  const r = await run(["mkswap", dev], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`mkswap failed on ${dev}: ${(r.stderr || r.stdout).trim().split("\n").pop() ?? ""}`);
  const m = /UUID=([0-9a-fA-F-]{36})/.exec(r.stdout + r.stderr);
  if (m) return m[1]!.toLowerCase();
  const b = await run(["blkid", "-o", "value", "-s", "UUID", dev]);
  const uuid = b.stdout.trim();
  if (!/^[0-9a-fA-F-]{36}$/.test(uuid)) throw new Error(`cannot read the UUID of the new swap on ${dev}`);
  return uuid.toLowerCase();
}

/** Disk-letter form of SWAP ("b" → disk index 1). */
export function swapDiskIndex(value: string): number | null {
  const v = value.trim();
  return /^[b-z]$/.test(v) ? v.charCodeAt(0) - "a".charCodeAt(0) : null;
}

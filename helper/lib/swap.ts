/**
 * Swap: mkswap a partition/disk and register it in the image's fstab by UUID.
 */
import { readTextIn, writeFileIn } from "./safepath.ts";
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

export function fstabSwapLine(uuid: string): string {
  return `UUID=${uuid} none swap sw 0 0`;
}

/** Append the swap line to /etc/fstab (kept owner/mode; no duplicate). Returns false if it was already there. */
export function addSwapToFstab(root: string, uuid: string): boolean {
  const old = readTextIn(root, "/etc/fstab") ?? "";
  if (old.split("\n").some((l) => l.trim().split(/\s+/)[0] === `UUID=${uuid}`)) return false;
  const sep = old === "" || old.endsWith("\n") ? "" : "\n";
  writeFileIn(root, "/etc/fstab", `${old}${sep}${fstabSwapLine(uuid)}\n`);
  return true;
}

/** Disk-letter form of SWAP ("b" → disk index 1). */
export function swapDiskIndex(value: string): number | null {
  const v = value.trim();
  return /^[b-z]$/.test(v) ? v.charCodeAt(0) - "a".charCodeAt(0) : null;
}

/** cloud-init swap file config (used under CLOUD_INIT, where no partition is carved). */
export function cloudInitSwapConfig(mib: number): string {
  const bytes = mib * 1024 * 1024;
  return `# Written by snf-image (SWAP property)\nswap:\n  filename: /swap.img\n  size: ${bytes}\n  maxsize: ${bytes}\n`;
}

/**
 * e2fsprogs wrapper: state check (dumpe2fs -h), forced preen (e2fsck -p -f)
 * and grow (resize2fs). Works on partitions and on plain image files.
 */
import type { RunFn } from "./exec.ts";

export interface E2fsHeader {
  state: string;
  features: string[];
  blockCount: number;
  blockSize: number;
}

export function parseDumpe2fsHeader(text: string): E2fsHeader {
  const field = (name: string): string | undefined => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, "m").exec(text);
    return m?.[1]?.trim();
  };
  const state = field("Filesystem state");
  if (state === undefined) throw new Error("dumpe2fs printed no filesystem state");
  return {
    state,
    features: (field("Filesystem features") ?? "").split(/\s+/).filter(Boolean),
    blockCount: Number(field("Block count") ?? 0),
    blockSize: Number(field("Block size") ?? 0),
  };
}

export async function readHeader(run: RunFn, dev: string): Promise<E2fsHeader> {
  const r = await run(["dumpe2fs", "-h", dev], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`dumpe2fs cannot read ${dev}: ${lastLine(r.stderr)}`);
  return parseDumpe2fsHeader(r.stdout);
}

/**
 * Refuse a filesystem that is not safe to touch offline: a journal that still
 * needs recovery (replayJournal first) or a state other than clean.
 * `what` names it in the message, e.g. "ext4 on vda1".
 */
export function assertClean(h: E2fsHeader, what: string): void {
  if (h.features.includes("needs_recovery")) {
    throw new Error(`${what} still has a journal that needs recovery after e2fsck replayed it`);
  }
  if (h.state !== "clean") {
    throw new Error(`${what} is not clean (state: ${h.state}); run e2fsck on the image before uploading it`);
  }
}

/**
 * An image taken from a snapshot of a running machine has a journal that
 * needs recovery. As the original (its PR #97), replay it with e2fsck -p:
 * inside the isolated helper that is safe. Says so with a warning line and
 * returns the header afterwards.
 */
export async function replayJournal(ctx: { run: RunFn; warn(msg: string): void }, dev: string, what: string, h?: E2fsHeader): Promise<E2fsHeader> {
  const before = h ?? (await readHeader(ctx.run, dev));
  if (!before.features.includes("needs_recovery")) return before;
  ctx.warn(`${what} has a journal that needs recovery (image taken from a running system?): replaying it with e2fsck -p`);
  const r = await ctx.run(["e2fsck", "-p", dev], { allowFail: true });
  if (r.exitCode > 1) throw new Error(`e2fsck could not replay the journal of ${what} (exit ${r.exitCode}): ${lastLine(r.stdout + "\n" + r.stderr)}`);
  return readHeader(ctx.run, dev);
}

/** e2fsck -p -f; exit 0/1 (nothing or fixed) is fine, anything else is an error. */
export async function preen(run: RunFn, dev: string, what: string): Promise<{ fixed: boolean }> {
  const r = await run(["e2fsck", "-p", "-f", dev], { allowFail: true });
  if (r.exitCode === 0) return { fixed: false };
  if (r.exitCode === 1) return { fixed: true };
  throw new Error(`e2fsck found errors it cannot fix on ${what} (exit ${r.exitCode}): ${lastLine(r.stdout + "\n" + r.stderr)}`);
}

/** resize2fs's own report of the block count ("is now N (4k) blocks long", "is already ..."), if any. */
export function parseResize2fsBlocks(output: string): number | undefined {
  const m = /\bis (?:now|already) (\d+) \(\d+k\) blocks long/.exec(output);
  return m ? Number(m[1]) : undefined;
}

/** Grow to the size of the device/partition; returns the new block count (from resize2fs, else dumpe2fs). */
export async function grow(run: RunFn, dev: string, what: string): Promise<number> {
  const r = await run(["resize2fs", dev], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`resize2fs failed on ${what}: ${lastLine(r.stderr || r.stdout)}`);
  return parseResize2fsBlocks(`${r.stdout}\n${r.stderr}`) ?? (await readHeader(run, dev)).blockCount;
}

function lastLine(s: string): string {
  return s.trim().split("\n").pop()?.trim() ?? "";
}

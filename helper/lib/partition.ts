/**
 * sfdisk wrapper: read a partition table, plan growing the last partition to
 * the end of the disk (optionally carving a swap partition from the end),
 * write the plan back one partition at a time and tell the kernel.
 *
 * Works on block devices and on plain image files (sfdisk handles both), so
 * the planning and writing are unit-testable on the host.
 */
import * as fs from "node:fs";
import type { Partition, TaskContext } from "../task.ts";
import type { RunFn } from "./exec.ts";

/** Flags for every write: never re-read here (done once, explicitly) and never wipe signatures. */
const WRITE_FLAGS = ["--no-reread", "--no-tell-kernel", "--wipe", "never", "--wipe-partitions", "never", "-q"];

export const SWAP_TYPE = { dos: "82", gpt: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" } as const;
const EXTENDED_TYPES = new Set(["5", "f", "85"]);

export interface TablePartition {
  number: number;
  node: string;
  start: number;
  size: number;
  type: string;
  kind: "primary" | "extended" | "logical" | "gpt";
}

export interface PartitionTable {
  label: "dos" | "gpt";
  device: string;
  sectorSize: number;
  /** GPT only: first/last usable LBA. */
  firstLba?: number;
  lastLba?: number;
  partitions: TablePartition[];
}

export const partEnd = (p: { start: number; size: number }): number => p.start + p.size - 1;

/** Partition number from an sfdisk node name (vda1 → 1, nvme0n1p2 → 2, disk.img5 → 5). */
function nodeNumber(device: string, node: string): number {
  const rest = node.startsWith(device) ? node.slice(device.length) : node;
  const m = /(\d+)$/.exec(rest);
  if (!m) throw new Error(`cannot tell the partition number of ${node}`);
  return Number(m[1]);
}

/** Parse `sfdisk --json` output. Returns null when the disk has no partition table. */
export function parseSfdiskJson(text: string): PartitionTable | null {
  if (text.trim() === "") return null;
  const doc = JSON.parse(text) as { partitiontable?: Record<string, unknown> };
  const t = doc.partitiontable;
  if (!t) return null;
  const label = t.label;
  if (label !== "dos" && label !== "gpt") throw new Error(`unsupported partition table type ${String(label)} (only msdos and GPT)`);
  const device = String(t.device ?? "");
  const raw = (t.partitions as Array<Record<string, unknown>> | undefined) ?? [];
  const partitions = raw.map((p): TablePartition => {
    const number = nodeNumber(device, String(p.node));
    const type = String(p.type ?? "").toLowerCase();
    const kind = label === "gpt" ? "gpt" : number >= 5 ? "logical" : EXTENDED_TYPES.has(type) ? "extended" : "primary";
    return { number, node: String(p.node), start: Number(p.start), size: Number(p.size), type, kind };
  });
  return {
    label,
    device,
    sectorSize: Number(t.sectorsize ?? 512),
    firstLba: t.firstlba === undefined ? undefined : Number(t.firstlba),
    lastLba: t.lastlba === undefined ? undefined : Number(t.lastlba),
    partitions,
  };
}

export async function readTable(run: RunFn, dev: string): Promise<PartitionTable | null> {
  const r = await run(["sfdisk", "--json", dev], { allowFail: true });
  if (r.exitCode !== 0) {
    if (/does not contain a recognized partition table/i.test(r.stderr)) return null;
    throw new Error(`sfdisk cannot read ${dev}: ${lastLine(r.stderr)}`);
  }
  return parseSfdiskJson(r.stdout);
}

/** Size of a block device or image file in bytes. */
export async function deviceBytes(run: RunFn, dev: string): Promise<number> {
  const st = fs.statSync(dev);
  if (!st.isBlockDevice()) return st.size;
  const r = await run(["blockdev", "--getsize64", dev]);
  return Number(r.stdout.trim());
}

export interface SwapRequest {
  number: number;
  mib: number;
}

export type PartitionChange =
  | { op: "resize"; number: number; size: number }
  | { op: "create"; number: number; start: number; size: number; type: string };

export interface GrowPlan {
  /** The data partition that grows (and whose filesystem is resized). */
  target: TablePartition;
  changes: PartitionChange[];
  /** Nothing to do: the last partition already reaches the end. */
  alreadyFull: boolean;
  swap?: { number: number; start: number; size: number };
}

/** Free space at the end smaller than this is "already full size". */
export const FULL_SLACK_MIB = 1;

/**
 * Plan growing the last partition. `totalSectors` is the disk size in
 * sectors; for GPT the limit is the table's last usable LBA (relocate the
 * backup header first so that it reflects the disk size).
 */
export function planGrow(table: PartitionTable, totalSectors: number, swap?: SwapRequest): GrowPlan {
  const grain = Math.max(1, Math.floor((1024 * 1024) / table.sectorSize));
  const maxEnd = table.label === "gpt" ? (table.lastLba ?? totalSectors - 34) : totalSectors - 1;
  const data = table.partitions.filter((p) => p.kind !== "extended");
  if (data.length === 0) throw new Error("the partition table has no partitions");
  const target = data.reduce((a, b) => (partEnd(b) > partEnd(a) ? b : a));
  const extended = table.partitions.find((p) => p.kind === "extended");
  if (target.kind === "logical" && extended && table.partitions.some((p) => p.kind === "primary" && p.start > extended.start)) {
    throw new Error("a primary partition follows the extended partition; cannot grow the last logical partition");
  }
  if (partEnd(target) > maxEnd) throw new Error(`partition ${target.number} ends beyond the end of the disk (${partEnd(target)} > ${maxEnd})`);

  const changes: PartitionChange[] = [];
  if (!swap) {
    const alreadyFull = maxEnd - partEnd(target) < FULL_SLACK_MIB * grain;
    if (alreadyFull) return { target, changes, alreadyFull };
    if (target.kind === "logical" && extended && partEnd(extended) < maxEnd) {
      changes.push({ op: "resize", number: extended.number, size: maxEnd - extended.start + 1 });
    }
    changes.push({ op: "resize", number: target.number, size: maxEnd - target.start + 1 });
    return { target, changes, alreadyFull: false };
  }

  // Swap carved from the end of the disk, aligned to 1 MiB.
  if (!Number.isInteger(swap.mib) || swap.mib <= 0) throw new Error(`bad swap size ${swap.mib} MiB`);
  if (table.partitions.some((p) => p.number === swap.number)) throw new Error(`partition ${swap.number} already exists; cannot create the swap partition`);
  const swapSectors = Math.ceil((swap.mib * 1024 * 1024) / table.sectorSize);
  const swapStart = Math.floor((maxEnd + 1 - swapSectors) / grain) * grain;
  const swapSize = maxEnd - swapStart + 1;
  let targetEnd: number;
  if (table.label === "gpt") {
    if (swap.number < 1 || swap.number > 128) throw new Error(`bad GPT partition number ${swap.number}`);
    targetEnd = swapStart - 1;
  } else if (swap.number <= 4) {
    if (extended) throw new Error(`the disk has an extended partition; the swap partition number must be 5 or more, not ${swap.number}`);
    if (swap.number < 1) throw new Error(`bad partition number ${swap.number}`);
    targetEnd = swapStart - 1;
  } else {
    // Logical swap: inside the existing extended partition, or a new one.
    const logicals = table.partitions.filter((p) => p.kind === "logical").map((p) => p.number);
    const nextLogical = logicals.length === 0 ? 5 : Math.max(...logicals) + 1;
    if (swap.number !== nextLogical) throw new Error(`the next logical partition is ${nextLogical}, not ${swap.number}`);
    if (extended) {
      if (target.kind !== "logical") throw new Error("the last partition is not inside the extended partition; cannot add a logical swap partition");
      targetEnd = swapStart - grain - 1; // room for the EBR before the swap partition
      if (partEnd(extended) < maxEnd) changes.push({ op: "resize", number: extended.number, size: maxEnd - extended.start + 1 });
    } else {
      const used = new Set(table.partitions.map((p) => p.number));
      const extNumber = [1, 2, 3, 4].find((n) => !used.has(n));
      if (extNumber === undefined) throw new Error("all four primary partitions are in use; cannot create an extended partition for swap");
      const extStart = swapStart - grain;
      targetEnd = extStart - 1;
      if (targetEnd <= partEnd(target)) throw new Error(`the disk is too small to grow partition ${target.number} and add ${swap.mib} MiB of swap`);
      changes.push({ op: "resize", number: target.number, size: targetEnd - target.start + 1 });
      changes.push({ op: "create", number: extNumber, start: extStart, size: maxEnd - extStart + 1, type: "5" });
      changes.push({ op: "create", number: swap.number, start: swapStart, size: swapSize, type: SWAP_TYPE.dos });
      return { target, changes, alreadyFull: false, swap: { number: swap.number, start: swapStart, size: swapSize } };
    }
  }
  if (targetEnd <= partEnd(target)) throw new Error(`the disk is too small to grow partition ${target.number} and add ${swap.mib} MiB of swap`);
  changes.push({ op: "resize", number: target.number, size: targetEnd - target.start + 1 });
  changes.push({ op: "create", number: swap.number, start: swapStart, size: swapSize, type: table.label === "gpt" ? SWAP_TYPE.gpt : SWAP_TYPE.dos });
  return { target, changes, alreadyFull: false, swap: { number: swap.number, start: swapStart, size: swapSize } };
}

/** Move the GPT backup header to the end of the disk (no-op if it is already there). */
export async function relocateGptBackup(run: RunFn, dev: string): Promise<void> {
  await run(["sfdisk", "--relocate", "gpt-bak-std", ...WRITE_FLAGS, dev]);
}

/** Write the planned changes, one partition at a time (type, UUIDs, names and flags are kept). */
export async function applyChanges(run: RunFn, dev: string, changes: PartitionChange[]): Promise<void> {
  for (const c of changes) {
    const line = c.op === "resize" ? `size=${c.size}\n` : `start=${c.start}, size=${c.size}, type=${c.type}\n`;
    await run(["sfdisk", "-N", String(c.number), ...WRITE_FLAGS, dev], { input: line });
  }
}

/** Make the kernel see the new table (block devices only; the disk must not be in use). */
export async function tellKernel(run: RunFn, dev: string): Promise<void> {
  if (!fs.statSync(dev).isBlockDevice()) return;
  // BLKRRPART first; partx then updates/adds anything the kernel still lacks
  // (loop devices without a completed partition scan; partx -a errors on existing ones: ignored).
  await run(["blockdev", "--rereadpt", dev], { allowFail: true });
  await run(["partx", "-u", dev], { allowFail: true });
  await run(["partx", "-a", dev], { allowFail: true });
}

/** Parse the SWAP property's partition form "<partnum>:<MiB>" (null for the disk-letter form or unset). */
export function parseSwapPartition(value: string | undefined): SwapRequest | null {
  if (value === undefined || value.trim() === "") return null;
  const v = value.trim();
  const m = /^(\d{1,3}):(\d{1,9})$/.exec(v);
  if (m) {
    const req = { number: Number(m[1]), mib: Number(m[2]) };
    if (req.number < 1 || req.mib < 1) throw new Error(`bad SWAP property ${JSON.stringify(v)}: expected <partition number>:<MiB>`);
    return req;
  }
  if (/^[b-z]$/.test(v)) return null;
  throw new Error(`bad SWAP property ${JSON.stringify(v)}: expected <partition number>:<MiB> or a disk letter b-z`);
}

function lastLine(s: string): string {
  return s.trim().split("\n").pop()?.trim() ?? "";
}

/**
 * The partition FixPartitionTable grew and whose filesystem gets resized:
 * the data partition that ends last, not counting extended partitions and
 * the swap partition carved from the end (SWAP=<number>:<MiB>).
 */
export function resizeTarget<P extends { number: number; startSector: number; sizeSectors: number; kind?: string }>(
  partitions: P[],
  swapNumber?: number,
): P | undefined {
  let best: P | undefined;
  for (const p of partitions) {
    if (p.kind === "extended" || p.number === swapNumber) continue;
    if (!best || p.startSector + p.sizeSectors > best.startSector + best.sizeSectors) best = p;
  }
  return best;
}

/** Filesystem type on a device as blkid sees it ("" when none). */
export async function probeFsType(run: RunFn, dev: string): Promise<string> {
  const r = await run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev], { allowFail: true });
  return r.exitCode === 0 ? r.stdout.trim() : "";
}

/** The partition the resize tasks work on (the grown one, SWAP honoured) and its filesystem. */
export async function resizeCandidate(ctx: Pick<TaskContext, "run" | "props" | "disk">): Promise<{ part: Partition; fs: string; what: string }> {
  const swap = parseSwapPartition(ctx.props.get("SWAP"));
  const part = resizeTarget(ctx.disk.partitions, swap?.number);
  if (!part) throw new Error(`no partition to resize on ${ctx.disk.dev}`);
  const fs = part.fsType || (await probeFsType(ctx.run, part.dev));
  return { part, fs, what: `${fs || "unknown filesystem"} on ${part.dev.split("/").pop()}` };
}

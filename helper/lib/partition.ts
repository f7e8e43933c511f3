/**
 * sfdisk writer: plan growing the last partition to the end of the disk
 * (optionally carving a swap partition from the end) on the disk model of
 * disk.ts (which reads the table), write the plan back one partition at a
 * time and tell the kernel.
 *
 * Works on block devices and on plain image files (sfdisk handles both), so
 * the planning and writing are unit-testable on the host.
 */
import * as fs from "node:fs";
import type { PartitionTable } from "../disk.ts";
import { libc } from "./libc.ts";
import type { Partition } from "../task.ts";
import type { RunFn } from "./exec.ts";

/** Flags for every write: never re-read here (done once, explicitly) and never wipe signatures. */
const WRITE_FLAGS = ["--no-reread", "--no-tell-kernel", "--wipe", "never", "--wipe-partitions", "never", "-q"];

export const SWAP_TYPE = { msdos: "82", gpt: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F" } as const;

export const partEnd = (p: { startSector: number; sizeSectors: number }): number => p.startSector + p.sizeSectors - 1;

export interface SwapRequest {
  number: number;
  mib: number;
}

export type PartitionChange =
  | { op: "resize"; number: number; size: number }
  | { op: "create"; number: number; start: number; size: number; type: string };

export interface GrowPlan {
  /** The data partition that grows (and whose filesystem is resized). */
  target: Partition;
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
  const maxEnd = table.table === "gpt" ? (table.lastLba ?? totalSectors - 34) : totalSectors - 1;
  const target = resizeTarget(table.partitions);
  if (!target) throw new Error("the partition table has no partitions");
  const extended = table.partitions.find((p) => p.kind === "extended");
  if (target.kind === "logical" && extended && table.partitions.some((p) => p.kind === "primary" && p.startSector > extended.startSector)) {
    throw new Error("a primary partition follows the extended partition; cannot grow the last logical partition");
  }
  if (partEnd(target) > maxEnd) throw new Error(`partition ${target.number} ends beyond the end of the disk (${partEnd(target)} > ${maxEnd})`);

  const changes: PartitionChange[] = [];
  if (!swap) {
    const alreadyFull = maxEnd - partEnd(target) < FULL_SLACK_MIB * grain;
    if (alreadyFull) return { target, changes, alreadyFull };
    if (target.kind === "logical" && extended && partEnd(extended) < maxEnd) {
      changes.push({ op: "resize", number: extended.number, size: maxEnd - extended.startSector + 1 });
    }
    changes.push({ op: "resize", number: target.number, size: maxEnd - target.startSector + 1 });
    return { target, changes, alreadyFull: false };
  }

  // Swap carved from the end of the disk, aligned to 1 MiB.
  if (!Number.isInteger(swap.mib) || swap.mib <= 0) throw new Error(`bad swap size ${swap.mib} MiB`);
  if (table.partitions.some((p) => p.number === swap.number)) throw new Error(`partition ${swap.number} already exists; cannot create the swap partition`);
  const swapSectors = Math.ceil((swap.mib * 1024 * 1024) / table.sectorSize);
  const swapStart = Math.floor((maxEnd + 1 - swapSectors) / grain) * grain;
  const swapSize = maxEnd - swapStart + 1;
  let targetEnd: number;
  if (table.table === "gpt") {
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
      if (partEnd(extended) < maxEnd) changes.push({ op: "resize", number: extended.number, size: maxEnd - extended.startSector + 1 });
    } else {
      const used = new Set(table.partitions.map((p) => p.number));
      const extNumber = [1, 2, 3, 4].find((n) => !used.has(n));
      if (extNumber === undefined) throw new Error("all four primary partitions are in use; cannot create an extended partition for swap");
      const extStart = swapStart - grain;
      targetEnd = extStart - 1;
      if (targetEnd <= partEnd(target)) throw new Error(`the disk is too small to grow partition ${target.number} and add ${swap.mib} MiB of swap`);
      changes.push({ op: "resize", number: target.number, size: targetEnd - target.startSector + 1 });
      changes.push({ op: "create", number: extNumber, start: extStart, size: maxEnd - extStart + 1, type: "5" });
      changes.push({ op: "create", number: swap.number, start: swapStart, size: swapSize, type: SWAP_TYPE.msdos });
      return { target, changes, alreadyFull: false, swap: { number: swap.number, start: swapStart, size: swapSize } };
    }
  }
  if (targetEnd <= partEnd(target)) throw new Error(`the disk is too small to grow partition ${target.number} and add ${swap.mib} MiB of swap`);
  changes.push({ op: "resize", number: target.number, size: targetEnd - target.startSector + 1 });
  changes.push({ op: "create", number: swap.number, start: swapStart, size: swapSize, type: table.table === "gpt" ? SWAP_TYPE.gpt : SWAP_TYPE.msdos });
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
  // BLKRRPART (an ioctl, no tool start): when the kernel accepts it, it has re-read the whole
  // table; done if every partition it knows has its node (devtmpfs makes them as it adds them).
  if (rereadPartitions(dev) && partitionNodesPresent(dev)) return;
  // Else partx updates/adds what the kernel lacks (loop devices without partition scanning;
  // partx -a errors on existing ones: ignored).
  await run(["blockdev", "--rereadpt", dev], { allowFail: true });
  await run(["partx", "-u", dev], { allowFail: true });
  await run(["partx", "-a", dev], { allowFail: true });
}

const BLKRRPART = 0x125f;

/** Does the kernel list partitions for dev (sysfs), each with its /dev node? (Only called for disks that have some.) */
function partitionNodesPresent(dev: string): boolean {
  const name = dev.slice(dev.lastIndexOf("/") + 1);
  try {
    const parts = fs.readdirSync(`/sys/class/block/${name}`).filter((n) => n.startsWith(name) && fs.existsSync(`/sys/class/block/${name}/${n}/partition`));
    return parts.length > 0 && parts.every((n) => fs.existsSync(`/dev/${n}`));
  } catch {
    return false;
  }
}

/** Ask the kernel to re-read dev's partition table; false if it refused (busy, no partition scanning). */
export function rereadPartitions(dev: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(dev, fs.constants.O_RDONLY);
  } catch {
    return false;
  }
  try {
    return libc().ioctl(fd, BLKRRPART, 0) === 0;
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
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

/**
 * The partition FixPartitionTable grew and whose filesystem gets resized:
 * the data partition that ends last, not counting extended partitions and
 * the swap partition carved from the end (SWAP=<number>:<MiB>).
 */
export function resizeTarget(partitions: readonly Partition[], swapNumber?: number): Partition | undefined {
  let best: Partition | undefined;
  for (const p of partitions) {
    if (p.kind === "extended" || p.number === swapNumber) continue;
    if (!best || p.startSector + p.sizeSectors > best.startSector + best.sizeSectors) best = p;
  }
  return best;
}

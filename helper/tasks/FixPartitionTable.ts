/**
 * Grow the last partition to the end of the disk (msdos primary, logical
 * with its extended partition, GPT after moving the backup header), and
 * optionally carve a swap partition from the end (SWAP=<number>:<MiB>).
 * OpenBSD/NetBSD: the BSD disklabel inside the grown slice follows it (its
 * last partition grows to the slice end).
 */
import type { Task, TaskContext } from "../task.ts";
import { growLabel, readLabel, writeLabel } from "../lib/disklabel.ts";
import { deviceBytes, readTable } from "../disk.ts";
import { applyChanges, parseSwapPartition, planGrow, relocateGptBackup, tellKernel } from "../lib/partition.ts";

/** Grow the disklabel of the slice to the slice's (new) size; true if it changed. */
async function growBsdLabel(ctx: TaskContext, family: "openbsd" | "netbsd", grownNumber: number, totalSectors: number): Promise<boolean> {
  const dev = ctx.disk.dev;
  const table = await readTable(ctx.run, dev);
  const slice = table?.partitions.find((p) => p.number === ctx.rootPartition.number);
  if (!slice) throw new Error(`the ${family} slice (partition ${ctx.rootPartition.number}) is gone`);
  if (slice.number !== grownNumber) {
    ctx.warn(`the ${family} slice is not the last partition; its disklabel is not grown`);
    return false;
  }
  const label = readLabel(dev, slice.startSector, family);
  const g = growLabel(label, slice.startSector, slice.sizeSectors, totalSectors);
  writeLabel(dev, slice.startSector, g.label);
  if (g.grown) ctx.info(`disklabel partition ${g.grown.letter} grown from ${g.oldSize} to ${g.grown.size} sectors`);
  else ctx.info("disklabel updated to the slice size; its last partition already reaches the end");
  return true;
}

export const task: Task = {
  name: "FixPartitionTable",
  mounted: false,
  excludable: true,
  cloudInitSkip: true,
  async run(ctx) {
    const dev = ctx.disk.dev;
    // the table main.ts read (unchanged since: no task before this one writes it)
    let table = ctx.disk.table === "none" ? await readTable(ctx.run, dev) : { ...ctx.disk, table: ctx.disk.table };
    if (!table) throw new Error(`${dev} has no partition table (only msdos and GPT disks are supported)`);
    if (table.partitions.length === 0) throw new Error(`the partition table on ${dev} has no partitions`);
    const swap = parseSwapPartition(ctx.props.get("SWAP")) ?? undefined;
    if (table.table === "gpt") {
      await relocateGptBackup(ctx.run, dev);
      table = await readTable(ctx.run, dev);
      if (!table) throw new Error(`${dev} lost its partition table while moving the GPT backup header`);
    }
    const totalSectors = Math.floor(deviceBytes(dev) / table.sectorSize);
    const plan = planGrow(table, totalSectors, swap);
    if (plan.alreadyFull) {
      ctx.info(`partition ${plan.target.number} already reaches the end of ${dev}; nothing to grow`);
    } else {
      await applyChanges(ctx.run, dev, plan.changes);
      const grown = plan.changes.find((c) => c.op === "resize" && c.number === plan.target.number);
      ctx.info(
        `grew partition ${plan.target.number} from ${plan.target.sizeSectors} to ${grown && grown.op === "resize" ? grown.size : "?"} sectors` +
          (plan.swap ? `; added swap partition ${plan.swap.number} (${plan.swap.size} sectors)` : ""),
      );
    }
    let relabelled = false;
    if (ctx.os.family === "openbsd" || ctx.os.family === "netbsd") {
      if (table.table !== "msdos") throw new Error(`${ctx.os.family} images must have an MBR with the ${ctx.os.family} slice`);
      relabelled = await growBsdLabel(ctx, ctx.os.family, plan.target.number, totalSectors);
    }
    if (table.table === "gpt" || !plan.alreadyFull || relabelled) {
      await tellKernel(ctx.run, dev);
      await ctx.refreshDisk();
    }
  },
};

/**
 * Grow the last partition to the end of the disk (msdos primary, logical
 * with its extended partition, GPT after moving the backup header), and
 * optionally carve a swap partition from the end (SWAP=<number>:<MiB>).
 */
import type { Task } from "../task.ts";
import { applyChanges, deviceBytes, parseSwapPartition, planGrow, readTable, relocateGptBackup, tellKernel } from "../lib/partition.ts";

export const task: Task = {
  name: "FixPartitionTable",
  mounted: false,
  excludable: true,
  cloudInitSkip: true,
  async run(ctx) {
    const dev = ctx.disk.dev;
    let table = await readTable(ctx.run, dev);
    if (!table) throw new Error(`${dev} has no partition table (only msdos and GPT disks are supported)`);
    if (table.partitions.length === 0) throw new Error(`the partition table on ${dev} has no partitions`);
    const swap = parseSwapPartition(ctx.props.get("SWAP")) ?? undefined;
    if (table.label === "gpt") {
      await relocateGptBackup(ctx.run, dev);
      table = await readTable(ctx.run, dev);
      if (!table) throw new Error(`${dev} lost its partition table while moving the GPT backup header`);
    }
    const totalSectors = Math.floor((await deviceBytes(ctx.run, dev)) / table.sectorSize);
    const plan = planGrow(table, totalSectors, swap);
    if (plan.alreadyFull) {
      ctx.info(`partition ${plan.target.number} already reaches the end of ${dev}; nothing to grow`);
    } else {
      await applyChanges(ctx.run, dev, plan.changes);
      const grown = plan.changes.find((c) => c.op === "resize" && c.number === plan.target.number);
      ctx.info(
        `grew partition ${plan.target.number} from ${plan.target.size} to ${grown && grown.op === "resize" ? grown.size : "?"} sectors` +
          (plan.swap ? `; added swap partition ${plan.swap.number} (${plan.swap.size} sectors)` : ""),
      );
    }
    if (table.label === "gpt" || !plan.alreadyFull) {
      await tellKernel(ctx.run, dev);
      await ctx.refreshDisk();
    }
  },
};

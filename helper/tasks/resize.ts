/**
 * Shared by the offline filesystem-resize tasks (FilesystemResizeUnmounted,
 * FilesystemResizeAfterUmount): which partition FixPartitionTable grew and
 * what filesystem is on it.
 */
import { probeFsType } from "../disk.ts";
import { parseSwapPartition, resizeTarget } from "../lib/partition.ts";
import type { Partition, TaskContext } from "../task.ts";

/** The partition the resize tasks work on (the grown one, SWAP honoured) and its filesystem. */
export async function resizeCandidate(ctx: Pick<TaskContext, "run" | "props" | "disk">): Promise<{ part: Partition; fs: string; what: string }> {
  const swap = parseSwapPartition(ctx.props.get("SWAP"));
  const part = resizeTarget(ctx.disk.partitions, swap?.number);
  if (!part) throw new Error(`no partition to resize on ${ctx.disk.dev}`);
  const fs = part.fsType || (await probeFsType(ctx.run, part.dev));
  return { part, fs, what: `${fs || "unknown filesystem"} on ${part.dev.split("/").pop()}` };
}

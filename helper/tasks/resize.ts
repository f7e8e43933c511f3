/**
 * Shared by the filesystem-resize tasks: which partition FixPartitionTable
 * grew and what filesystem is on it, and the shape of the two offline ones
 * (FilesystemResizeUnmounted, FilesystemResizeAfterUmount).
 */
import { probeFsType } from "../disk.ts";
import { parseSwapPartition, resizeTarget } from "../lib/partition.ts";
import type { Partition, Task, TaskContext } from "../task.ts";

/** The partition FixPartitionTable grew (the data partition ending last; SWAP's carved partition not counted). */
export function grownPartition(ctx: Pick<TaskContext, "props" | "disk">): Partition | undefined {
  return resizeTarget(ctx.disk.partitions, parseSwapPartition(ctx.props.get("SWAP"))?.number);
}

/** The partition the resize tasks work on and its filesystem ("" when blkid finds none). */
export async function resizeCandidate(ctx: Pick<TaskContext, "run" | "props" | "disk">): Promise<{ part: Partition; fs: string; what: string }> {
  const part = grownPartition(ctx);
  if (!part) throw new Error(`no partition to resize on ${ctx.disk.dev}`);
  const fs = part.fsType || (await probeFsType(ctx.run, part.dev));
  return { part, fs, what: `${fs || "unknown filesystem"} on ${part.dev.split("/").pop()}` };
}

/**
 * An offline resize task (nothing of the image mounted; skipped by
 * EXCLUDE_FILESYSTEMRESIZE_TASKS and CLOUD_INIT): finds the candidate and
 * resizes it when its filesystem is one the task handles.
 */
export function offlineResizeTask(
  name: string,
  o: { handles(fs: string): boolean; otherwise: string; resize(ctx: TaskContext, part: Partition, what: string): Promise<void> },
): Task {
  return {
    name,
    mounted: false,
    excludable: true,
    fsResize: true,
    cloudInitSkip: true,
    async run(ctx) {
      const { part, fs, what } = await resizeCandidate(ctx);
      if (!o.handles(fs)) {
        ctx.info(`${what}: ${o.otherwise}`);
        return;
      }
      await o.resize(ctx, part, what);
    },
  };
}

/**
 * Grow an ext2/3/4 filesystem on the grown partition while nothing is
 * mounted. A journal that needs recovery (an image taken from a snapshot of
 * a running machine) is replayed first, with a warning; a filesystem that is
 * still not clean after that is refused. Other filesystems are left to
 * FilesystemResizeMounted.
 */
import type { TaskContext } from "../task.ts";
import { assertClean, grow, preen, replayJournal } from "../lib/e2fs.ts";
import { offlineResizeTask } from "./resize.ts";

const EXT = new Set(["ext2", "ext3", "ext4"]);

export const task = offlineResizeTask("FilesystemResizeUnmounted", {
  handles: (fs) => EXT.has(fs),
  otherwise: "not ext2/3/4, not resized offline",
  resize: (ctx, part, what) => resizeExt(ctx, part.dev, what),
});

/** Check, preen and grow one ext filesystem (exported for the tests). */
export async function resizeExt(ctx: Pick<TaskContext, "run" | "info" | "warn">, dev: string, what: string): Promise<void> {
  // One dumpe2fs for the state check; the block counts come from it and from resize2fs's own
  // report (each tool start costs tens of ms under TCG). e2fsck -p never changes the size.
  const before = await replayJournal(ctx, dev, what);
  assertClean(before, what);
  const { fixed } = await preen(ctx.run, dev, what);
  if (fixed) ctx.info(`e2fsck fixed minor problems on ${what}`);
  const after = await grow(ctx.run, dev, what);
  ctx.info(`${what}: ${before.blockCount} → ${after} blocks of ${before.blockSize} bytes`);
}

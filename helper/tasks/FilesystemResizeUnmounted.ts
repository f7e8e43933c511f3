/**
 * Grow an ext2/3/4 filesystem on the grown partition while nothing is
 * mounted. A journal that needs recovery (an image taken from a snapshot of
 * a running machine) is replayed first, with a warning; a filesystem that is
 * still not clean after that is refused. Other filesystems are left to
 * FilesystemResizeMounted.
 */
import type { TaskContext } from "../task.ts";
import { assertClean, grow, preen, readHeader, replayJournal } from "../lib/e2fs.ts";
import { offlineResizeTask } from "./resize.ts";

const EXT = new Set(["ext2", "ext3", "ext4"]);

export const task = offlineResizeTask("FilesystemResizeUnmounted", {
  handles: (fs) => EXT.has(fs),
  otherwise: "not ext2/3/4, not resized offline",
  resize: (ctx, part, what) => resizeExt(ctx, part.dev, what),
});

/** Check, preen and grow one ext filesystem (exported for the tests). */
export async function resizeExt(ctx: Pick<TaskContext, "run" | "info" | "warn">, dev: string, what: string): Promise<void> {
  assertClean(await replayJournal(ctx, dev, what), what);
  const { fixed } = await preen(ctx.run, dev, what);
  if (fixed) ctx.info(`e2fsck fixed minor problems on ${what}`);
  const before = await readHeader(ctx.run, dev);
  await grow(ctx.run, dev, what);
  const after = await readHeader(ctx.run, dev);
  ctx.info(`${what}: ${before.blockCount} → ${after.blockCount} blocks of ${after.blockSize} bytes`);
}

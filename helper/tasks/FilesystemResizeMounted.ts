/**
 * Grow XFS and btrfs on the grown partition; both resize only while
 * mounted. ext* is handled (unmounted) by FilesystemResizeUnmounted.
 */
import * as path from "node:path";
import type { Task } from "../task.ts";
import { growBtrfs } from "../lib/btrfs.ts";
import { currentMountPointsOf } from "../lib/mounts.ts";
import { parseSwapPartition, probeFsType, resizeTarget } from "../lib/partition.ts";
import { growXfs } from "../lib/xfs.ts";

export const task: Task = {
  name: "FilesystemResizeMounted",
  mounted: true,
  excludable: true,
  fsResize: true,
  cloudInitSkip: true,
  families: ["linux"],
  async run(ctx) {
    const swap = parseSwapPartition(ctx.props.get("SWAP"));
    const part = resizeTarget(ctx.disk.partitions, swap?.number);
    if (!part) throw new Error(`no partition to resize on ${ctx.disk.dev}`);
    const fs = part.fsType || (await probeFsType(ctx.run, part.dev));
    if (fs !== "xfs" && fs !== "btrfs") {
      ctx.info(`${fs || "unknown filesystem"} on ${path.basename(part.dev)}: not resized while mounted`);
      return;
    }
    const mp = part.number === ctx.rootPartition.number ? ctx.root : currentMountPointsOf(part.dev)[0];
    if (!mp) {
      ctx.warn(`${fs} on ${path.basename(part.dev)} is not mounted (not in the image's fstab?); not resized`);
      return;
    }
    if (fs === "xfs") await growXfs(ctx.run, mp);
    else await growBtrfs(ctx.run, mp, part.dev);
    ctx.info(`grew ${fs} on ${path.basename(part.dev)}`);
  },
};

/**
 * Grow XFS and btrfs on the grown partition; both resize only while
 * mounted. ext* is handled (unmounted) by FilesystemResizeUnmounted.
 */
import * as path from "node:path";
import { growBtrfs } from "../lib/btrfs.ts";
import { mountPointsOf } from "../lib/mount.ts";
import { grownPartition, resizeCandidate } from "./resize.ts";
import { growXfs } from "../lib/xfs.ts";
import type { Task, TaskContext } from "../task.ts";
import { type BsdFamily, editRcConf, GROWFS_RC_VAR, isBsd } from "../os/bsd.ts";
import { lastDataPartition, readLabel } from "../lib/disklabel.ts";

/**
 * No Debian tool grows UFS, so the guest does it at first boot: FreeBSD's
 * growfs_enable and NetBSD's resize_root grow the root filesystem to its
 * (already grown) partition. OpenBSD has no such switch: warn.
 */
function growAtBoot(ctx: TaskContext, family: BsdFamily): void {
  const part = grownPartition(ctx);
  let rootGrew = part?.number === ctx.rootPartition.number;
  let what = `partition ${part?.number ?? "?"}`;
  if (rootGrew && family !== "freebsd") {
    const last = lastDataPartition(readLabel(ctx.disk.dev, ctx.rootPartition.startSector, family));
    rootGrew = last?.index === 0;
    what = `disklabel partition ${last?.letter ?? "?"}`;
  }
  const rcVar = GROWFS_RC_VAR[family];
  if (!rcVar) {
    ctx.warn(`${what} was grown, but ${family} cannot grow its filesystem at boot and no Linux tool can grow UFS: run growfs on it in ${family}`);
    return;
  }
  if (!rootGrew) {
    ctx.warn(`${what} was grown but is not the root filesystem; ${family} grows only / at boot: run growfs on it in ${family}`);
    return;
  }
  editRcConf(ctx.root, [[rcVar, "YES"]]);
  ctx.info(`${family} grows the root filesystem to its partition at first boot (${rcVar}="YES" in /etc/rc.conf)`);
}

export const task: Task = {
  name: "FilesystemResizeMounted",
  mounted: true,
  excludable: true,
  fsResize: true,
  cloudInitSkip: true,
  families: ["linux", "freebsd", "openbsd", "netbsd"],
  async run(ctx) {
    if (isBsd(ctx.os.family)) return growAtBoot(ctx, ctx.os.family);
    const { part, fs, what } = await resizeCandidate(ctx);
    if (fs !== "xfs" && fs !== "btrfs") {
      ctx.info(`${what}: not resized while mounted`);
      return;
    }
    const mp = part.number === ctx.rootPartition.number ? ctx.root : mountPointsOf(part.dev)[0];
    if (!mp) {
      ctx.warn(`${fs} on ${path.basename(part.dev)} is not mounted (not in the image's fstab?); not resized`);
      return;
    }
    if (fs === "xfs") await growXfs(ctx.run, mp);
    else await growBtrfs(ctx.run, mp, part.dev);
    ctx.info(`grew ${fs} on ${path.basename(part.dev)}`);
  },
};

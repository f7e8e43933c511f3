/**
 * MountImage: mount the root partition read-write at ctx.root, then (linux)
 * every local filesystem the image's /etc/fstab names, parents first. fstab
 * entries must name partitions of this disk by UUID/LABEL/PARTUUID/PARTLABEL
 * (which entries, in what order: os/fstab.ts).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import type { Task, TaskContext } from "../task.ts";
import { carriedOptions, parseFstab, planFstabMounts } from "../os/fstab.ts";
import { imageMounts, mountIsReadOnly, type Mounts } from "../lib/mount.ts";
import { isDirIn, mkdirIn, readTextIn, resolveInRoot } from "../lib/safepath.ts";
import { detectDistro } from "../os/distro.ts";
import { replayJournal } from "../lib/e2fs.ts";
import { bsdRootDevice, isBsd, type BsdFamily, ufsTypeOf } from "../os/bsd.ts";
import { UFS_WRITE_MARKER } from "../../src/protocol.ts";

export async function mountImage(ctx: TaskContext, mounts: Mounts = imageMounts): Promise<void> {
  fs.mkdirSync(ctx.root, { recursive: true, mode: 0o755 });
  const rp = ctx.rootPartition;
  const windows = ctx.os.family === "windows" || ctx.os.family === "windows-legacy";
  if (isBsd(ctx.os.family)) return mountBsd(ctx, ctx.os.family, mounts);
  if (!windows && ctx.os.family !== "linux") throw new Error(`mounting ${ctx.os.family} images is not supported`);
  // The filesystem resize replays a dirty ext journal; when it did not run
  // (excluded, CLOUD_INIT), replay it here, with the same warning.
  if (!windows && (rp.fsType === "ext3" || rp.fsType === "ext4")) await replayJournal(ctx, rp.dev, `${rp.fsType} on ${rp.dev.split("/").pop()}`);
  await mounts.mount(rp.dev, ctx.root, { fsType: windows ? "ntfs" : rp.fsType });
  if (windows) return;
  if (!isDirIn(ctx.root, "/etc")) throw new Error(`root partition ${rp.number} has no /etc`);
  ctx.os.distro = detectDistro(ctx.root);
  ctx.info(`mounted partition ${rp.number} (${rp.fsType ?? "unknown fs"}); distro family ${ctx.os.distro}`);
  const fstab = readTextIn(ctx.root, "/etc/fstab");
  if (fstab === undefined) {
    ctx.warn("the image has no /etc/fstab; only the root filesystem is mounted");
    return;
  }
  const plan = planFstabMounts(parseFstab(fstab), ctx.disk, (e, why) => ctx.info(`fstab line ${e.line} (${e.file}) not mounted: ${why}`));
  for (const { entry, partition } of plan) {
    mkdirIn(ctx.root, entry.file);
    const target = resolveInRoot(ctx.root, entry.file);
    const fsType = partition.fsType ?? (entry.vfstype === "auto" ? undefined : entry.vfstype);
    await mounts.mount(partition.dev, target, { fsType, options: carriedOptions(entry) });
    ctx.info(`mounted partition ${partition.number} on ${entry.file}`);
  }
}

async function mountBsd(ctx: TaskContext, family: BsdFamily, mounts: Mounts): Promise<void> {
  if (!fs.existsSync(UFS_WRITE_MARKER)) {
    const kv = os.release();
    const series = /^(\d+\.\d+)/.exec(kv)?.[1] ?? "X.Y";
    throw new Error(`this helper has no UFS write support: install linux-source-${series} linux-headers-${kv} make gcc on the node and rebuild the helper (snf-image helper build)`);
  }
  const dev = bsdRootDevice(ctx.disk, ctx.rootPartition, family);
  const ufstype = ufsTypeOf(dev);
  if (!ufstype) throw new Error(`no UFS filesystem on the ${family} root (${dev})`);
  await mounts.mount(dev, ctx.root, { fsType: "ufs", options: [`ufstype=${ufstype}`] });
  // Linux mounts an unclean UFS read-only without failing
  if (mountIsReadOnly(ctx.root) !== false) {
    await mounts.umount(ctx.root);
    throw new Error(`the ${family} root filesystem (${dev}) was not cleanly unmounted; Linux will only mount it read-only (fsck it in ${family} and make the image again)`);
  }
  if (!isDirIn(ctx.root, "/etc")) throw new Error(`the ${family} root filesystem has no /etc`);
  ctx.info(`mounted ${family} root ${dev} (UFS, ufstype=${ufstype}) read-write; other fstab entries are not mounted`);
}

export const task: Task = {
  name: "MountImage",
  modes: ["create", "rename"],
  mounted: true,
  excludable: false,
  run: (ctx) => mountImage(ctx),
};

/**
 * Grow NTFS offline (ntfsresize) on the partition FixPartitionTable grew,
 * after everything is unmounted. Unlike the original (which left Windows
 * ≥ Vista to extend its own volume at first boot through its unattend /
 * diskpart flow, which we do not have), this runs for every family by
 * default; OFFLINE_NTFSRESIZE=no turns it off. A volume marked dirty is
 * refused unless OFFLINE_NTFSRESIZE_NOCHECK is set. ntfsresize leaves the
 * grown volume scheduled for chkdsk at the first Windows boot, on purpose.
 */
import type { TaskContext } from "../task.ts";
import { growNtfs, NtfsDirtyError, readNtfsInfo, waitNtfs3gReleased } from "../lib/ntfs.ts";
import { offlineResizeTask } from "./resize.ts";

export const task = offlineResizeTask("FilesystemResizeAfterUmount", {
  handles: (fs) => fs === "ntfs",
  otherwise: "not NTFS, nothing to resize after unmounting",
  async resize(ctx, part, what) {
    if (ctx.props.get("OFFLINE_NTFSRESIZE") !== undefined && !ctx.props.bool("OFFLINE_NTFSRESIZE")) {
      ctx.info(`${what}: OFFLINE_NTFSRESIZE is off, not resized`);
      return;
    }
    await resizeNtfs(ctx, part.dev, what, { noCheck: ctx.props.bool("OFFLINE_NTFSRESIZE_NOCHECK") });
  },
});

/** Check and grow one NTFS volume to its device (exported for the tests). */
export async function resizeNtfs(
  ctx: Pick<TaskContext, "run" | "info" | "warn">,
  dev: string,
  what: string,
  opts: { noCheck?: boolean } = {},
): Promise<void> {
  if (!(await waitNtfs3gReleased(dev))) throw new Error(`${what} is still held by ntfs-3g after unmounting; not resized`);
  let info;
  try {
    info = await readNtfsInfo(ctx.run, dev, what);
  } catch (e) {
    if (!(e instanceof NtfsDirtyError) || !opts.noCheck) throw e;
    ctx.warn(`${what} is marked dirty; resizing anyway because OFFLINE_NTFSRESIZE_NOCHECK is set`);
    info = await readNtfsInfo(ctx.run, dev, what, { force: true });
  }
  if (info.volumeBytes > info.deviceBytes) throw new Error(`${what}: the NTFS volume (${info.volumeBytes} bytes) is larger than its partition (${info.deviceBytes} bytes)`);
  const r = await growNtfs(ctx.run, dev, what, { noCheck: opts.noCheck });
  if (!r.grown) {
    ctx.info(`${what}: NTFS already fills its partition (${info.volumeBytes} bytes)`);
    return;
  }
  ctx.info(`${what}: NTFS grown ${info.volumeBytes} → ${r.newVolumeBytes} bytes (chkdsk will run at the first Windows boot)`);
}

/**
 * A throwaway 64 MiB raw disk for test boots of the helper (doctor, the KVM probe): msdos label, one Linux
 * partition at 1 MiB holding an empty ext4 made by mke2fs -E offset (no loop
 * device, no mount). The helper reads the table and, with EXCLUDE_ALL_TASKS,
 * touches nothing else.
 */
import fs from "node:fs";
import { exec, requireTool } from "../exec.ts";

export const PROBE_DISK_MIB = 64;

/** Create the disk at `file` (which must not exist). */
export async function makeProbeDisk(file: string): Promise<void> {
  const sfdisk = requireTool("sfdisk", "fdisk");
  const mke2fs = requireTool("mke2fs", "e2fsprogs");
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    fs.ftruncateSync(fd, PROBE_DISK_MIB * 2 ** 20);
  } finally {
    fs.closeSync(fd);
  }
  const doing = "making the test disk";
  await exec([sfdisk, "-q", "--no-reread", "--no-tell-kernel", file], { input: "label: dos\nstart=2048, type=83\n", doing });
  await exec([mke2fs, "-q", "-F", "-t", "ext4", "-L", "snf-doctor", "-E", "offset=1048576", file, `${(PROBE_DISK_MIB - 1) * 1024}k`], { doing });
}

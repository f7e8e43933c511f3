/**
 * A throwaway 64 MiB raw disk for test boots of the helper (doctor, the KVM probe): msdos label, one Linux
 * partition at 1 MiB holding an empty ext4 made by mke2fs -E offset (no loop
 * device, no mount). The helper reads the table and, with EXCLUDE_ALL_TASKS,
 * touches nothing else.
 */
import fs from "node:fs";
import path from "node:path";
import { SnfError } from "../errors.ts";

export const PROBE_DISK_MIB = 64;

async function run(argv: string[], stdin?: string): Promise<void> {
  let p;
  try {
    p = Bun.spawn(argv, { stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), stdout: "ignore", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } });
  } catch (e) {
    throw new SnfError(`cannot run ${argv[0]}: ${(e as Error).message}`);
  }
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new SnfError(`${path.basename(argv[0]!)} failed making the test disk: ${err.trim().split("\n").pop() ?? `exit ${code}`}`);
}

const tool = (name: string, pkg: string): string => {
  const p = Bun.which(name, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/bin:/bin` });
  if (!p) throw new SnfError(`${name} not found: install ${pkg}`);
  return p;
};

/** Create the disk at `file` (which must not exist). */
export async function makeProbeDisk(file: string): Promise<void> {
  const sfdisk = tool("sfdisk", "fdisk");
  const mke2fs = tool("mke2fs", "e2fsprogs");
  const fd = fs.openSync(file, "wx", 0o600);
  try {
    fs.ftruncateSync(fd, PROBE_DISK_MIB * 2 ** 20);
  } finally {
    fs.closeSync(fd);
  }
  await run([sfdisk, "-q", "--no-reread", "--no-tell-kernel", file], "label: dos\nstart=2048, type=83\n");
  await run([mke2fs, "-q", "-F", "-t", "ext4", "-L", "snf-doctor", "-E", "offset=1048576", file, `${(PROBE_DISK_MIB - 1) * 1024}k`]);
}

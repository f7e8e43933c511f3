/** btrfs-progs wrapper: grow a mounted btrfs filesystem's device on a partition to the maximum. */
import type { RunFn } from "./exec.ts";

/** Device id of `dev` in the filesystem mounted at mountPoint (1 for single-device filesystems). */
export async function btrfsDevid(run: RunFn, mountPoint: string, dev: string): Promise<number> {
  const r = await run(["btrfs", "filesystem", "show", mountPoint], { allowFail: true });
  for (const line of r.stdout.split("\n")) {
    const m = /devid\s+(\d+)\s.*\spath\s+(\S+)\s*$/.exec(line);
    if (m && m[2] === dev) return Number(m[1]);
  }
  return 1;
}

export async function growBtrfs(run: RunFn, mountPoint: string, dev: string): Promise<void> {
  const devid = await btrfsDevid(run, mountPoint, dev);
  const r = await run(["btrfs", "filesystem", "resize", `${devid}:max`, mountPoint], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`btrfs resize failed on ${mountPoint}: ${(r.stderr || r.stdout).trim().split("\n").pop() ?? ""}`);
}

/** xfsprogs wrapper: grow a mounted XFS filesystem to its partition size. */
import type { Run } from "./partition.ts";

export async function growXfs(run: Run, mountPoint: string): Promise<void> {
  const r = await run(["xfs_growfs", mountPoint], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`xfs_growfs failed on ${mountPoint}: ${(r.stderr || r.stdout).trim().split("\n").pop() ?? ""}`);
}

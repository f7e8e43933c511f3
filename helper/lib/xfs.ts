/** xfsprogs wrapper: grow a mounted XFS filesystem to its partition size. */
import type { RunFn } from "./exec.ts";

export async function growXfs(run: RunFn, mountPoint: string): Promise<void> {
  const r = await run(["xfs_growfs", mountPoint], { allowFail: true });
  if (r.exitCode !== 0) throw new Error(`xfs_growfs failed on ${mountPoint}: ${(r.stderr || r.stdout).trim().split("\n").pop() ?? ""}`);
}

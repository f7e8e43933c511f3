/**
 * Run a build-time tool (apt-get, dpkg, depmod, modprobe, ldd, mke2fs, xz)
 * and capture its output. A failure becomes one SnfError line naming the tool
 * and the last line it printed on stderr.
 */
import { SnfError } from "../errors.ts";

export interface ExecResult { stdout: string; stderr: string; exitCode: number }

export async function exec(
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string>; allowFail?: boolean } = {},
): Promise<ExecResult> {
  let proc;
  try {
    proc = Bun.spawn(argv, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: "C", ...opts.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (e) {
    throw new SnfError(`cannot run ${argv[0]}: ${(e as Error).message}`);
  }
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (exitCode !== 0 && !opts.allowFail) {
    const last = stderr.trim().split("\n").pop() ?? "";
    throw new SnfError(`${argv[0]} failed (exit ${exitCode})${last ? `: ${last}` : ""}`);
  }
  return { stdout, stderr, exitCode };
}

export function requireTool(name: string, pkg: string): string {
  const p = Bun.which(name, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/bin:/bin` });
  if (!p) throw new SnfError(`${name} not found: install ${pkg}`);
  return p;
}

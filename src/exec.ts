/**
 * Run a build-time tool (apt-get, dpkg, depmod, modprobe, ldd, mke2fs, xz)
 * and capture its output. A failure becomes one SnfError line naming the tool
 * and the last line it printed on stderr.
 */
import path from "node:path";
import { SnfError, errorMessage } from "./errors.ts";

export interface ExecResult { stdout: string; stderr: string; exitCode: number }

export async function exec(
  argv: string[],
  opts: {
    cwd?: string;
    env?: Record<string, string>;
    /** Written to the tool's stdin (default: none). */
    input?: string;
    allowFail?: boolean;
    /** What the run was for, in the failure line ("making the test disk"). */
    doing?: string;
  } = {},
): Promise<ExecResult> {
  let proc;
  try {
    proc = Bun.spawn(argv, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: "C", ...opts.env },
      stdin: opts.input === undefined ? "ignore" : new TextEncoder().encode(opts.input),
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (e) {
    throw new SnfError(`cannot run ${argv[0]}: ${errorMessage(e)}`);
  }
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (exitCode !== 0 && !opts.allowFail) {
    const last = stderr.trim().split("\n").pop() ?? "";
    throw new SnfError(`${path.basename(argv[0] ?? "")} failed${opts.doing ? ` ${opts.doing}` : ""} (exit ${exitCode})${last ? `: ${last}` : ""}`);
  }
  return { stdout, stderr, exitCode };
}

/** The tool's path (also looked up in the sbin directories), or an SnfError naming the package. */
export function requireTool(name: string, pkg: string): string {
  const p = Bun.which(name, { PATH: `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/bin:/bin` });
  if (!p) throw new SnfError(`${name} not found: install ${pkg}`);
  return p;
}

/**
 * Run one of the helper's own tools (TaskContext.run). Secrets go on stdin,
 * never in argv; stdin contents are never logged.
 */
export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface RunOptions {
  /** Written to stdin (use it for secrets: never put them in argv). */
  input?: string | Uint8Array;
  /** Return a non-zero exit instead of throwing CommandError. */
  allowFail?: boolean;
  /** Added to the tool's environment (PATH and LC_ALL=C, nothing else). */
  env?: Record<string, string>;
}

/** The one "run a helper tool" function type: `run` below, TaskContext.run, and every lib/ wrapper's parameter. */
export type RunFn = (cmd: string[], opts?: RunOptions) => Promise<RunResult>;

export const HELPER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

export class CommandError extends Error {
  constructor(
    readonly cmd: string[],
    readonly result: RunResult,
  ) {
    const last = result.stderr.trim().split("\n").pop()?.trim() || result.stdout.trim().split("\n").pop()?.trim() || "";
    super(`${cmd[0]} failed (exit ${result.exitCode})${last ? `: ${last.slice(0, 200)}` : ""}`);
    this.name = "CommandError";
  }
}

export const run: RunFn = async (cmd, opts = {}) => {
  let proc;
  try {
    proc = Bun.spawn({
      cmd,
      stdin: opts.input === undefined ? "ignore" : "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: process.env.PATH || HELPER_PATH, LC_ALL: "C", ...opts.env },
    });
  } catch (e) {
    throw new Error(`cannot run ${cmd[0]}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (opts.input !== undefined && proc.stdin) {
    proc.stdin.write(opts.input);
    await proc.stdin.end();
  }
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const r: RunResult = { stdout, stderr, exitCode };
  if (exitCode !== 0 && !opts.allowFail) throw new CommandError(cmd, r);
  return r;
};

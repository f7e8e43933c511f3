/**
 * Runs one command body with the project's error contract: a failure prints
 * one line naming the cause (the last line Ganeti shows), exits non-zero and
 * runs every cleanup. SIGTERM/SIGINT (Ganeti cancelling a job) abort the body
 * through its AbortSignal; the body gets a grace period to stop its children
 * before the cleanups run anyway. The error line is always the last output.
 */
import { runCleanups, signalAbort } from "../cleanup.ts";
import { ReportedFailure, SnfError } from "../errors.ts";
import { log } from "../log.ts";
import { oneLine } from "../protocol.ts";

const ABORT_GRACE_MS = 10_000;

export async function runScript(name: string, body: (signal: AbortSignal) => Promise<void>): Promise<never> {
  const ac = signalAbort();
  let failure: unknown = null;
  const overdue = new Promise<never>((_, reject) => {
    ac.signal.addEventListener("abort", () => setTimeout(() => reject(new SnfError("did not stop in time")), ABORT_GRACE_MS).unref(), { once: true });
  });
  try {
    await Promise.race([body(ac.signal), overdue]);
  } catch (e) {
    failure = e ?? new Error("unknown failure");
  }
  await runCleanups();
  if (failure !== null) {
    const e = failure;
    let line: string;
    if (e instanceof ReportedFailure) line = e.message;
    else if (e instanceof SnfError) line = `ERROR: ${e.message}`;
    else {
      log.debug((e as Error)?.stack ?? String(e));
      line = `ERROR: internal error: ${(e as Error)?.message ?? String(e)}`;
    }
    if (ac.signal.aborted && !/cancel/i.test(line)) line = line.replace(/^ERROR: /, `ERROR: cancelled (${(ac.signal.reason as Error)?.message ?? "signal"}): `);
    // The last line Ganeti shows: causes quote URLs, servers and the image, so flatten it.
    process.stderr.write(`snf-image ${name}: ${oneLine(line)}\n`);
    process.exit(1);
  }
  process.exit(0);
}

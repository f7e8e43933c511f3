/**
 * Runs one command body with the project's error contract: a failure prints
 * one line naming the cause (the last line Ganeti shows), exits non-zero and
 * runs every cleanup; SIGTERM/SIGINT abort the body and clean up too.
 */
import { runCleanups, signalAbort } from "../cleanup.ts";
import { SnfError } from "../errors.ts";
import { log } from "../log.ts";

export async function runScript(name: string, body: (signal: AbortSignal) => Promise<void>): Promise<never> {
  const ac = signalAbort();
  let code = 0;
  try {
    await Promise.race([
      body(ac.signal),
      new Promise<never>((_, reject) => {
        ac.signal.addEventListener("abort", () => reject(new SnfError(`${name} cancelled: ${(ac.signal.reason as Error)?.message ?? "signal"}`)), { once: true });
      }),
    ]);
  } catch (e) {
    code = 1;
    await runCleanups();
    if (e instanceof SnfError) {
      process.stderr.write(`snf-image ${name}: ERROR: ${e.message}\n`);
    } else if (e instanceof Error && e.constructor.name === "VerifyFailed") {
      process.stderr.write(`snf-image ${name}: ${e.message}\n`);
    } else {
      log.debug((e as Error)?.stack ?? String(e));
      process.stderr.write(`snf-image ${name}: ERROR: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    }
  }
  await runCleanups();
  process.exit(code);
}

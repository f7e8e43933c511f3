/**
 * Cleanup stack: everything that a run creates outside its own memory (temp
 * files, loop devices, child processes) registers an undo step here. Steps run
 * in reverse order on normal exit, on error and on SIGTERM/SIGINT (Ganeti
 * cancelling a job). A failing step is retried a few times (busy devices).
 */
import { log } from "./log.ts";

type Step = { what: string; run: () => void | Promise<void> };
const stack: Step[] = [];
let running: Promise<void> | null = null;

export function onCleanup(what: string, run: () => void | Promise<void>): () => void {
  const step = { what, run };
  stack.push(step);
  return () => {
    const i = stack.indexOf(step);
    if (i >= 0) stack.splice(i, 1);
  };
}

export function runCleanups(): Promise<void> {
  if (running) return running;
  running = (async () => {
    while (stack.length) {
      const step = stack.pop()!;
      for (let attempt = 0; ; attempt++) {
        try {
          await step.run();
          break;
        } catch (e) {
          if (attempt >= 4) {
            log.warn(`cleanup failed: ${step.what}: ${(e as Error).message}`);
            break;
          }
          await Bun.sleep(250 * 2 ** attempt);
        }
      }
    }
  })();
  return running.finally(() => {
    running = null;
  });
}

/** Abort controller that fires on SIGTERM/SIGINT; the caller runs cleanups. */
export function signalAbort(): AbortController {
  const ac = new AbortController();
  const on = (sig: string) => () => {
    if (!ac.signal.aborted) ac.abort(new Error(`interrupted by ${sig}`));
  };
  process.on("SIGTERM", on("SIGTERM"));
  process.on("SIGINT", on("SIGINT"));
  process.on("SIGHUP", on("SIGHUP"));
  return ac;
}

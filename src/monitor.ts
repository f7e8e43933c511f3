/**
 * Progress reporting in the original's JSON monitor format (one JSON object
 * a line, each with `type` and `timestamp`). With PROGRESS_MONITOR set the
 * lines go to that program's stdin (argv[1] = instance name); otherwise they
 * go into the Ganeti OS log as `[MONITOR] …` lines.
 */
import { oneLine, type MonitorEvent } from "./protocol.ts";
import { log } from "./log.ts";

export type MonitorMessage =
  | { type: "image-info"; messages: string[] }
  | { type: "image-error"; messages: string[] }
  | { type: "image-copy-progress"; position: number; total: number; progress: number }
  | { type: "image-helper"; subtype: "task-start" | "task-end"; task: string }
  | { type: "image-helper"; subtype: "warning" | "error"; messages: string[] };

export interface Monitor {
  send(m: MonitorMessage): void;
  info(text: string): void;
  /** Copy progress, throttled to one message every `intervalMs`; the final one always goes and has total = position. */
  copyProgress(position: number, total: number, final?: boolean): void;
  helperEvent(e: MonitorEvent): void;
  close(): Promise<void>;
  /** Where the helper VM's console lines go (default: stderr as `HELPER: …`). */
  consoleLine?(line: string): void;
  /** How often the copy should report progress (default: the writer's 3 s). */
  progressEveryMs?: number;
}

export function openMonitor(o: { program: string; instance: string; intervalMs?: number; write?: (line: string) => void }): Monitor {
  const interval = o.intervalMs ?? 3000;
  let proc: ReturnType<typeof Bun.spawn> | null = null;
  let broken = false;
  if (o.program) {
    try {
      proc = Bun.spawn({
        cmd: [...o.program.split(/\s+/).filter(Boolean), o.instance],
        stdin: "pipe",
        stdout: "inherit",
        stderr: "inherit",
        // explicitly: Bun's default is the environment at start, with the OSP_* the OS scripts drop
        env: process.env,
      });
    } catch (e) {
      log.warn(`PROGRESS_MONITOR ${o.program} could not start: ${(e as Error).message}`);
      proc = null;
    }
  }
  const write =
    o.write ??
    ((line: string) => {
      if (proc && !broken && (proc.exitCode !== null || proc.signalCode !== null)) {
        // Writes into the pipe of a program that is gone vanish without an error.
        broken = true;
        log.warn(`PROGRESS_MONITOR exited (${proc.exitCode ?? proc.signalCode}); progress goes to the log`);
      }
      if (proc && !broken) {
        try {
          const sink = proc.stdin as import("bun").FileSink;
          sink.write(`${line}\n`);
          sink.flush();
          return;
        } catch {
          broken = true;
          log.warn("PROGRESS_MONITOR stopped reading; progress goes to the log");
        }
      }
      process.stderr.write(`[MONITOR] ${oneLine(line)}\n`);
    });

  let lastProgress = 0;
  const send = (m: MonitorMessage) => write(JSON.stringify({ ...m, timestamp: Date.now() / 1000 }));
  return {
    send,
    info: (text) => send({ type: "image-info", messages: [text] }),
    copyProgress(position, total, final = false) {
      const now = Date.now();
      if (!final && now - lastProgress < interval) return;
      lastProgress = now;
      // The end of the copy is 100 %, also when the total was only an estimate
      // (a compressed or chunked image is measured against the disk size).
      if (final) total = position;
      const progress = total > 0 ? Math.round((position / total) * 10000) / 100 : 100;
      send({ type: "image-copy-progress", position, total, progress });
    },
    helperEvent(e) {
      switch (e.kind) {
        case "TASK_START":
          send({ type: "image-helper", subtype: "task-start", task: e.task });
          break;
        case "TASK_END":
          send({ type: "image-helper", subtype: "task-end", task: e.task });
          break;
        case "WARNING":
          send({ type: "image-helper", subtype: "warning", messages: [e.text] });
          break;
        case "ERROR":
          send({ type: "image-helper", subtype: "error", messages: [e.text] });
          break;
        default:
          break;
      }
    },
    async close() {
      if (!proc) return;
      try {
        (proc.stdin as import("bun").FileSink).end();
      } catch {
        /* already gone */
      }
      const t = setTimeout(() => proc?.kill("SIGKILL"), 5000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/**
 * Progress of `snf-image deploy` for people and machines (the Monitor that
 * `create` feeds the Ganeti progress monitor with, rendered differently):
 *
 *   tty    one line redrawn on stderr: the copy as a bar with bytes/s and
 *          ETA, then the helper's current task; log lines are printed above it
 *   plain  one line per event on stderr (copy every few seconds)
 *   json   one JSON object a line on stdout ({"event": …}); logs stay on stderr
 *
 * Texts that come from the helper (and so maybe from the image) pass through
 * oneLine (control, C1 and bidi characters dropped) before they reach a terminal.
 */
import { humanSize } from "./doctor/images.ts";
import type { Monitor, MonitorMessage } from "./monitor.ts";
import { oneLine, type MonitorEvent } from "./protocol.ts";

export type ProgressMode = "tty" | "plain" | "json";

export interface ProgressSink {
  write(s: string): void;
  /** Terminal width (tty only). */
  columns?: number;
}

export interface TerminalMonitor extends Monitor {
  /** Print something above the bar (a log line). */
  above(line: string): void;
  /** The final event: success summary or the error line. */
  end(o: { ok: true; summary: Record<string, unknown>; text: string } | { ok: false; error: string }): void;
}

/** THE sanitizer (src/protocol.ts), bounded: nothing from the helper moves the cursor or forges a line. */
const clean = (s: string) => oneLine(s).slice(0, 500);

export function clock(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return "--:--";
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

/** The copy line: `copy [#####-----]  50%  1.0 GiB/2.0 GiB  120.0 MiB/s  ETA 0:08`. */
export function copyLine(pos: number, total: number, elapsedMs: number, width: number): string {
  const rate = elapsedMs > 0 ? (pos * 1000) / elapsedMs : 0;
  const pct = total > 0 ? Math.min(100, (pos / total) * 100) : 100;
  const eta = rate > 0 ? (total - pos) / rate : Number.NaN;
  const tail = ` ${pct.toFixed(0).padStart(3)}%  ${humanSize(pos)}/${humanSize(total)}  ${humanSize(rate)}/s  ETA ${clock(eta)}`;
  const barLen = Math.max(10, Math.min(40, width - tail.length - 8));
  const done = Math.round((barLen * pct) / 100);
  return `copy [${"#".repeat(done)}${"-".repeat(barLen - done)}]${tail}`;
}

export function openTerminalMonitor(mode: ProgressMode, sink: ProgressSink, now: () => number = () => performance.now()): TerminalMonitor {
  let bar = ""; // what is on the tty's current line
  let copyStart: number | null = null;
  let lastPlain = 0;
  let tasksDone = 0;
  const t0 = now();
  const width = () => Math.max(40, (sink.columns || 80) - 1);
  const draw = (s: string) => {
    bar = s.slice(0, width());
    sink.write(`\r\x1b[K${bar}`);
  };
  const line = (s: string) => {
    if (mode === "tty") {
      sink.write(`\r\x1b[K${s}\n`);
      if (bar) sink.write(bar);
    } else sink.write(`${s}\n`);
  };
  const json = (o: Record<string, unknown>) => sink.write(`${JSON.stringify({ ...o, t: Math.round(now() - t0) })}\n`);

  const m: TerminalMonitor = {
    progressEveryMs: mode === "tty" ? 200 : 1000,
    send(msg: MonitorMessage) {
      if (msg.type === "image-error") return; // end() reports the error
      if (msg.type === "image-info") for (const t of msg.messages) m.info(t);
    },
    info(text) {
      if (mode === "json") json({ event: "info", text: clean(text) });
      else line(clean(text));
    },
    copyProgress(position, total, final = false) {
      const t = now();
      copyStart ??= t;
      const elapsed = t - copyStart;
      if (final) total = position;
      if (mode === "json") {
        if (!final && t - lastPlain < 1000) return;
        lastPlain = t;
        const rate = elapsed > 0 ? Math.round((position * 1000) / elapsed) : 0;
        json({ event: "copy", bytes: position, total, rate, eta: rate > 0 ? Math.round((total - position) / rate) : null, done: final });
      } else if (mode === "tty") {
        draw(copyLine(position, total, elapsed, width()));
        if (final) {
          sink.write("\n");
          bar = "";
        }
      } else {
        if (!final && t - lastPlain < 3000) return;
        lastPlain = t;
        line(clean(copyLine(position, total, elapsed, 100).replace(/\[[#-]+\] */, "")));
      }
    },
    helperEvent(e: MonitorEvent) {
      const secs = ((now() - t0) / 1000).toFixed(1);
      switch (e.kind) {
        case "TASK_START":
          if (mode === "json") json({ event: "task-start", task: e.task });
          else if (mode === "tty") draw(`helper [${tasksDone} done] ${e.task} ...  ${secs} s`);
          break;
        case "TASK_END":
          tasksDone++;
          if (mode === "json") json({ event: "task-end", task: e.task, ms: e.ms });
          else if (mode === "tty") draw(`helper [${tasksDone} done] ${e.task} ok  ${secs} s`);
          else line(`helper: ${e.task} done in ${(e.ms / 1000).toFixed(2)} s`);
          break;
        case "TASK_SKIP":
          if (mode === "json") json({ event: "task-skip", task: e.task, reason: clean(e.reason) });
          break;
        case "WARNING":
        case "ERROR":
          if (mode === "json") json({ event: e.kind.toLowerCase(), text: clean(e.text) });
          else line(`helper ${e.kind.toLowerCase()}: ${clean(e.text)}`);
          break;
        default:
          break;
      }
    },
    consoleLine(text) {
      if (mode === "json") json({ event: "helper-console", text: clean(text) });
      else line(`HELPER: ${clean(text)}`);
    },
    above(text) {
      if (mode === "json") return;
      line(clean(text));
    },
    end(o) {
      if (mode === "tty" && bar) {
        sink.write("\r\x1b[K");
        bar = "";
      }
      if (mode === "json") json(o.ok ? { event: "done", ok: true, ...o.summary } : { event: "error", ok: false, message: o.error });
      else if (o.ok) sink.write(`${o.text}\n`);
    },
    async close() {
      if (mode === "tty" && bar) {
        sink.write("\n");
        bar = "";
      }
    },
  };
  return m;
}

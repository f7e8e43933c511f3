/**
 * The helper's two output channels to the host:
 *  result  (ttyS1): one line, SUCCESS or "ERROR: <one line>" (encodeResult);
 *  monitor (ttyS2): progress events, one a line (encodeMonitor), capped at
 *                   MONITOR_MAX_LINES so the host never sees an overrun.
 * Paths can be overridden with SNF_HELPER_RESULT / SNF_HELPER_MONITOR (tests).
 * Human-readable progress goes to stderr, which is the console (ttyS0).
 */
import * as fs from "node:fs";
import { encodeMonitor, encodeResult, MONITOR_MAX_LINES, oneLine, type HelperResult, type MonitorEvent } from "../src/protocol.ts";

export interface Channels {
  monitor(e: MonitorEvent): void;
  result(r: HelperResult): void;
  /** Console only (ttyS0). */
  console(msg: string): void;
}

function openOrNull(p: string): number | null {
  try {
    return fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NOCTTY | fs.constants.O_CREAT, 0o600);
  } catch {
    return null;
  }
}

export function openChannels(env: Record<string, string | undefined> = process.env): Channels {
  const resultPath = env.SNF_HELPER_RESULT || "/dev/ttyS1";
  const monitorPath = env.SNF_HELPER_MONITOR || "/dev/ttyS2";
  let monitorFd: number | null | undefined;
  let monitorLines = 0;
  let resultSent = false;
  const con = (msg: string): void => {
    try {
      // One line whatever the message carries: text from the image (fstab,
      // os-release, file names) must not forge a line of its own on the host.
      fs.writeSync(2, `snf-image-helper: ${oneLine(msg)}\n`);
    } catch {
      // console gone: nothing to do
    }
  };
  return {
    console: con,
    monitor(e) {
      if (e.kind === "WARNING" || e.kind === "ERROR" || e.kind === "INFO") con(`${e.kind}: ${e.text}`);
      // Keep the last allowed line for an ERROR event.
      const limit = e.kind === "ERROR" ? MONITOR_MAX_LINES : MONITOR_MAX_LINES - 1;
      if (monitorLines >= limit) return;
      monitorLines++;
      if (monitorFd === undefined) monitorFd = openOrNull(monitorPath);
      if (monitorFd === null) return;
      try {
        fs.writeSync(monitorFd, `${encodeMonitor(e)}\n`);
      } catch {
        // host stopped listening; the result channel still decides
      }
    },
    result(r) {
      if (resultSent) return;
      resultSent = true;
      con(r.ok ? "SUCCESS" : `ERROR: ${r.error}`);
      const fd = openOrNull(resultPath);
      if (fd === null) return;
      try {
        fs.writeSync(fd, encodeResult(r));
        try {
          fs.fsyncSync(fd);
        } catch {
          // ttys cannot fsync
        }
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

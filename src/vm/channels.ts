/**
 * Bounded host-side readers for the three serial channels of the helper VM.
 * Each takes raw chunks as they arrive and never buffers more than a fixed
 * amount, whatever the (untrusted) guest writes.
 *   console (ttyS0): free text → sanitized lines, capped in length and total
 *   result  (ttyS1): first line only, at most RESULT_MAX_BYTES
 *   monitor (ttyS2): at most MONITOR_MAX_LINES lines of MONITOR_MAX_LINE_BYTES,
 *                    each parsed with decodeMonitor; anything else stops
 *                    monitoring with an error (the verdict is still the result)
 */
import {
  type HelperResult,
  MONITOR_MAX_LINE_BYTES,
  MONITOR_MAX_LINES,
  type MonitorEvent,
  decodeMonitor,
  decodeResult,
  oneLine,
} from "../protocol.ts";
import { errorMessage } from "../errors.ts";

export const RESULT_MAX_BYTES = 4096;
export const CONSOLE_MAX_LINE = 2048;
export const CONSOLE_MAX_BYTES = 4 * 1024 * 1024;

export class ResultReader {
  private buf = Buffer.alloc(0);
  private done = false;
  /** `onLine` runs once, when the first line is complete (or the size bound is reached). */
  constructor(private readonly onLine: () => void = () => {}) {}
  push(chunk: Uint8Array): void {
    if (this.done) return;
    const room = RESULT_MAX_BYTES - this.buf.length;
    this.buf = Buffer.concat([this.buf, Buffer.from(chunk.subarray(0, room))]);
    const nl = this.buf.indexOf(10);
    if (nl >= 0) {
      this.buf = this.buf.subarray(0, nl + 1);
      this.done = true;
    } else if (this.buf.length >= RESULT_MAX_BYTES) this.done = true;
    if (this.done) this.onLine();
  }
  result(): HelperResult | null {
    return decodeResult(this.buf.toString("utf8"));
  }
}

export class MonitorReader {
  private pending = Buffer.alloc(0);
  private lines = 0;
  error: string | undefined;
  constructor(private readonly onEvent: (e: MonitorEvent) => void) {}

  push(chunk: Uint8Array): void {
    if (this.error) return;
    this.pending = Buffer.concat([this.pending, Buffer.from(chunk)]);
    for (let nl = this.pending.indexOf(10); nl >= 0 && !this.error; nl = this.pending.indexOf(10)) {
      const line = this.pending.subarray(0, nl);
      this.pending = this.pending.subarray(nl + 1);
      this.line(line);
    }
    // a line cannot be longer than the limit plus "\r"
    if (!this.error && this.pending.length > MONITOR_MAX_LINE_BYTES + 1) this.fail(`monitor line longer than ${MONITOR_MAX_LINE_BYTES} bytes`);
  }

  end(): void {
    if (!this.error && this.pending.length) this.line(this.pending);
    this.pending = Buffer.alloc(0);
  }

  private line(raw: Buffer): void {
    const text = raw.toString("utf8").replace(/\r$/, "");
    if (text === "") return;
    if (++this.lines > MONITOR_MAX_LINES) return this.fail(`more than ${MONITOR_MAX_LINES} monitor lines`);
    let e: MonitorEvent;
    try {
      e = decodeMonitor(text);
    } catch (err) {
      return this.fail(`bad monitor line: ${errorMessage(err)}`);
    }
    this.onEvent(e);
  }

  private fail(msg: string): void {
    this.error = msg;
    this.pending = Buffer.alloc(0);
  }
}

export class ConsoleReader {
  private pending = "";
  private total = 0;
  private truncated = false;
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });
  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: Uint8Array): void {
    if (this.truncated) return;
    this.total += chunk.length;
    if (this.total > CONSOLE_MAX_BYTES) {
      this.truncated = true;
      this.flush();
      this.onLine(`[helper VM console output truncated after ${CONSOLE_MAX_BYTES} bytes]`);
      return;
    }
    this.pending += this.decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      this.emit(this.pending.slice(0, nl));
      this.pending = this.pending.slice(nl + 1);
    }
    while (this.pending.length > CONSOLE_MAX_LINE) {
      this.emit(this.pending.slice(0, CONSOLE_MAX_LINE));
      this.pending = this.pending.slice(CONSOLE_MAX_LINE);
    }
  }

  end(): void {
    if (!this.truncated) this.flush();
  }

  private flush(): void {
    if (this.pending) this.emit(this.pending);
    this.pending = "";
  }

  private emit(line: string): void {
    this.onLine(oneLine(line));
  }
}

/**
 * A small QMP client for the helper VM (used only by src/vm/qemu.ts). As with
 * the serial channels, the host listens on a unix socket in the run's private
 * directory and qemu connects to it (`-chardev socket,id=qmp,path=…` +
 * `-mon chardev=qmp,mode=control`), before -runas drops its privileges.
 *
 * Every reply is bounded (line length, pending bytes) and every command has a
 * timeout: a qemu that stops answering fails the command, never the process.
 */
import type { Socket, UnixSocketListener } from "bun";

const MAX_LINE_BYTES = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;

export class QmpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QmpError";
  }
}

/** One line qemu's monitor sent, as much of it as the host uses. */
export type QmpMessage = { kind: "greeting" } | { kind: "event" } | { kind: "return"; value: unknown } | { kind: "error"; desc: string } | { kind: "other" };

/** Parse one QMP line (both monitors: this one and fdmonitor.ts); not JSON → QmpError. */
export function parseQmpLine(text: string): QmpMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    throw new QmpError("QMP sent something that is not JSON");
  }
  if (typeof msg !== "object" || msg === null) return { kind: "other" };
  if ("QMP" in msg) return { kind: "greeting" };
  if ("event" in msg) return { kind: "event" };
  if ("error" in msg) {
    const e = (msg as { error?: { desc?: unknown } }).error;
    return { kind: "error", desc: typeof e?.desc === "string" ? e.desc.slice(0, 300) : "QMP error" };
  }
  if ("return" in msg) return { kind: "return", value: (msg as { return: unknown }).return };
  return { kind: "other" };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Qmp {
  private readonly listener: UnixSocketListener<undefined>;
  private peer: Socket<undefined> | null = null;
  private buf = Buffer.alloc(0);
  private greeted = false;
  private closed = false;
  private readonly pending: Pending[] = [];
  private readonly greetingWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor(file: string) {
    this.listener = Bun.listen<undefined>({
      unix: file,
      socket: {
        open: (s) => {
          if (this.peer) s.end();
          else this.peer = s;
        },
        data: (s, d) => {
          if (s === this.peer) this.push(d);
        },
        close: (s) => {
          if (s === this.peer) this.fail("qemu closed its QMP connection");
        },
        error: (s) => {
          if (s === this.peer) this.fail("QMP connection error");
        },
      },
    });
  }

  private push(d: Uint8Array): void {
    this.buf = Buffer.concat([this.buf, Buffer.from(d)]);
    for (let nl = this.buf.indexOf(10); nl >= 0; nl = this.buf.indexOf(10)) {
      const line = this.buf.subarray(0, nl).toString("utf8");
      this.buf = this.buf.subarray(nl + 1);
      this.line(line);
    }
    if (this.buf.length > MAX_LINE_BYTES) this.fail("QMP reply too long");
  }

  private line(text: string): void {
    let msg: QmpMessage;
    try {
      msg = parseQmpLine(text);
    } catch (e) {
      return this.fail((e as Error).message);
    }
    if (msg.kind === "greeting") {
      this.greeted = true;
      for (const w of this.greetingWaiters.splice(0)) w.resolve();
      return;
    }
    if (msg.kind !== "return" && msg.kind !== "error") return; // nothing here waits for events
    const p = this.pending.shift();
    if (!p) return;
    clearTimeout(p.timer);
    if (msg.kind === "error") p.reject(new QmpError(msg.desc));
    else p.resolve(msg.value);
  }

  private fail(why: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new QmpError(why));
    }
    for (const w of this.greetingWaiters.splice(0)) w.reject(new QmpError(why));
    this.peer?.end();
  }

  /** Wait for qemu's greeting and leave capabilities negotiation. */
  async connect(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    if (!this.greeted) {
      await new Promise<void>((resolve, reject) => {
        if (this.closed) return reject(new QmpError("QMP connection closed"));
        const timer = setTimeout(() => reject(new QmpError(`qemu did not open its QMP connection within ${timeoutMs / 1000} s`)), timeoutMs);
        this.greetingWaiters.push({
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
      });
    }
    await this.cmd("qmp_capabilities");
  }

  /** One command; resolves with its `return`, rejects with its error description. */
  cmd(name: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown> {
    if (this.closed || !this.peer) return Promise.reject(new QmpError(`QMP not connected (${name})`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.pending.findIndex((p) => p.timer === timer);
        if (i >= 0) this.pending.splice(i, 1);
        this.fail(`QMP ${name} got no answer within ${timeoutMs / 1000} s`);
        reject(new QmpError(`QMP ${name} got no answer within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.push({ resolve, reject, timer });
      this.peer!.write(`${JSON.stringify(args ? { execute: name, arguments: args } : { execute: name })}\n`);
    });
  }

  /** Poll `query-status` until the VM is in one of `states`. */
  async waitStatus(states: string[], timeoutMs: number, what: string): Promise<string> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const r = (await this.cmd("query-status")) as { status?: unknown };
      const st = typeof r?.status === "string" ? r.status : "unknown";
      if (states.includes(st)) return st;
      if (st === "shutdown" || st === "internal-error" || st === "guest-panicked") throw new QmpError(`${what}: the VM is ${st}`);
      if (performance.now() > end) throw new QmpError(`${what}: still ${st} after ${timeoutMs / 1000} s`);
      await Bun.sleep(5);
    }
  }

  stop(): void {
    this.fail("QMP closed");
    this.listener.stop(true);
  }
}

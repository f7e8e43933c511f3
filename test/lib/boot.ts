/**
 * Boot a deployed disk under qemu TCG and drive its serial console from
 * TypeScript (expect-like): log in with a password, run commands, capture
 * their output between unique markers, power off. qemu never outlives the
 * test process: every VM is killed on close(), on a failed login, on a
 * timeout and on process exit.
 */
import { readFileSync } from "node:fs";
import type { Subprocess } from "bun";

export interface BootOptions {
  disk: string;
  kernel: string;
  initrd: string;
  rootUuid: string;
  user: string;
  password: string;
  /** NIC MAC; default 52:54:00:12:34:56. */
  mac?: string;
  /** Boot + login deadline; default 300 s. */
  timeoutSec?: number;
  /** Every console chunk as it arrives (e.g. process.stderr.write). */
  log?: (s: string) => void;
  /** Write guest changes to a throwaway overlay (default true: cached images stay intact). */
  snapshot?: boolean;
  /** Extra kernel command line. */
  append?: string;
  memMiB?: number;
  smp?: number;
}

export interface Session {
  /** Run a shell command as the logged-in user; returns its output (stdout+stderr), throws on non-zero exit. */
  run(cmd: string, timeoutSec?: number): Promise<string>;
  /** Like run() but returns the exit code instead of throwing. */
  exec(cmd: string, timeoutSec?: number): Promise<{ code: number; output: string }>;
  /** The whole console transcript so far (\r and ANSI escape sequences removed). */
  transcript(): string;
  /** `poweroff -f`, wait for qemu to exit (kill it after 15 s). Idempotent. */
  close(): Promise<void>;
}

const live = new Set<Subprocess>();
let exitHookInstalled = false;
function track(p: Subprocess): void {
  live.add(p);
  p.exited.then(() => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    const killAll = () => {
      for (const q of live) q.kill("SIGKILL");
    };
    process.on("exit", killAll);
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      process.once(sig, () => {
        killAll();
        process.exit(130);
      });
    }
  }
}

function tscKhz(): number | undefined {
  try {
    const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync("/proc/cpuinfo", "utf8"));
    return m ? Math.round(Number(m[1]) * 1000) : undefined;
  } catch {
    return undefined;
  }
}

export function qemuArgs(o: BootOptions): string[] {
  const khz = tscKhz();
  const append = [
    `root=UUID=${o.rootUuid}`, "ro", "console=ttyS0", "panic=-1",
    ...(khz ? [`tsc_early_khz=${khz}`] : []),
    ...(o.append ? [o.append] : []),
  ].join(" ");
  return [
    "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
    "-accel", "tcg", "-cpu", "max", "-M", "q35",
    "-m", String(o.memMiB ?? 1024), "-smp", String(o.smp ?? 2),
    "-kernel", o.kernel, "-initrd", o.initrd, "-append", append,
    "-drive", `file=${o.disk},format=raw,if=none,id=d0,cache=unsafe${o.snapshot === false ? "" : ",snapshot=on"}`,
    "-device", "virtio-blk-pci,drive=d0",
    "-netdev", "user,id=n0,restrict=on",
    "-device", `virtio-net-pci,netdev=n0,mac=${o.mac ?? "52:54:00:12:34:56"}`,
    "-serial", "stdio", "-monitor", "none",
  ];
}

class Console {
  buf = "";
  pos = 0;
  exited: number | null = null;
  private wake: (() => void)[] = [];

  constructor(readonly proc: Subprocess<"pipe", "pipe", "pipe">, readonly log?: (s: string) => void) {
    (async () => {
      const dec = new TextDecoder();
      let raw = "";
      for await (const chunk of proc.stdout) {
        const s = dec.decode(chunk, { stream: true });
        this.log?.(s);
        // Matching works on text without \r and without ANSI CSI sequences
        // (colours, bracketed paste); an escape split across chunks waits.
        raw += s;
        const esc = raw.lastIndexOf("\x1b");
        let keep = "";
        if (esc >= 0 && !/^\x1b\[[0-9;?]*[@-~]/.test(raw.slice(esc)) && raw.length - esc < 32) {
          keep = raw.slice(esc);
          raw = raw.slice(0, esc);
        }
        this.buf += raw.replace(/\x1b\[[0-9;?]*[@-~]/g, "").replace(/\x1b[()][A-Z0-9]/g, "").replaceAll("\r", "");
        raw = keep;
        this.notify();
      }
    })().catch(() => {});
    proc.exited.then((c) => {
      this.exited = c;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  tail(n = 25): string {
    return this.buf.split("\n").slice(-n).join("\n");
  }

  send(s: string): void {
    this.proc.stdin.write(s);
    this.proc.stdin.flush();
  }

  /** Wait until re matches the console text after the previous match; consume up to the match end. */
  async waitFor(re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    const g = new RegExp(re.source, re.flags.includes("g") ? re.flags : re.flags + "g");
    for (;;) {
      g.lastIndex = this.pos;
      const m = g.exec(this.buf);
      if (m) {
        this.pos = m.index + m[0].length;
        return m;
      }
      if (this.exited !== null) {
        throw new Error(`qemu exited (code ${this.exited}) while waiting for ${what}; last console lines:\n${this.tail()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timeout after ${Math.round(timeoutMs / 1000)} s waiting for ${what}; last console lines:\n${this.tail()}`);
      }
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(left, 1000));
        this.wake.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}

/** Boot the disk with its kernel/initrd, log in on ttyS0; the caller must close(). */
/**
 * Boot and log in; a guest kernel that panics on its way up (seen once: a trixie kernel under
 * TCG with -smp 2, in sched_clock_cpu while patching its own text, 1.9 s after start, long
 * before it mounted anything) is booted once more, saying so.
 */
export async function bootAndLogin(o: BootOptions): Promise<Session> {
  try {
    return await bootAndLoginOnce(o);
  } catch (e) {
    if (!/Kernel panic - not syncing/.test((e as Error).message)) throw e;
    console.log(`guest kernel panicked while booting; booting once more:\n${(e as Error).message.split("\n").slice(0, 3).join("\n")}`);
    return await bootAndLoginOnce(o);
  }
}

async function bootAndLoginOnce(o: BootOptions): Promise<Session> {
  const proc = Bun.spawn(qemuArgs(o), { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  track(proc);
  const con = new Console(proc, o.log);
  let stderr = "";
  (async () => {
    stderr = await new Response(proc.stderr).text();
  })().catch(() => {});
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (con.exited === null) {
      try {
        con.send("\npoweroff -f\n");
      } catch {}
      const t = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await proc.exited;
      clearTimeout(t);
    }
  };

  const deadline = Date.now() + (o.timeoutSec ?? 300) * 1000;
  const left = () => Math.max(1, deadline - Date.now());
  try {
    await con.waitFor(/[\w.-]+ login: /, left(), "the login prompt");
    con.send(`${o.user}\n`);
    await con.waitFor(/Password: ?$/m, Math.min(left(), 30_000), "the password prompt");
    con.send(`${o.password}\n`);
    const m = await con.waitFor(/(Login incorrect|[#$] $)/m, Math.min(left(), 60_000), "a shell prompt after login");
    if (m[1] === "Login incorrect") {
      throw new Error(`login as ${o.user} failed (Login incorrect); last console lines:\n${con.tail()}`);
    }
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    closed = true;
    const msg = (e as Error).message + (stderr.trim() ? `\nqemu stderr: ${stderr.trim()}` : "");
    throw new Error(msg);
  }

  let seq = 0;
  const exec = async (cmd: string, timeoutSec = 120) => {
    if (closed) throw new Error("session closed");
    const id = `${process.pid}x${++seq}`;
    // The markers are split by quotes on the sent line, so the tty echo of the
    // command never matches; only the printed marker lines do.
    if (seq === 1) {
      // quiet session: no echo, no prompts, no bracketed-paste escapes, no kernel chatter
      con.send("stty -echo cols 500 2>/dev/null; dmesg -n 1 2>/dev/null; PS1=; PS2=; " +
        "bind 'set enable-bracketed-paste off' 2>/dev/null; unset PROMPT_COMMAND\n");
    }
    con.send(`echo '__SNF'"B${id}__"\n${cmd}\necho '__SNF'"E${id}__ $?"\n`);
    const t = timeoutSec * 1000;
    await con.waitFor(new RegExp(`^__SNFB${id}__\\n`, "m"), t, `start of "${cmd}"`);
    const start = con.pos;
    const end = await con.waitFor(new RegExp(`^__SNFE${id}__ (\\d+)$`, "m"), t, `end of "${cmd}"`);
    return { code: Number(end[1]), output: con.buf.slice(start, end.index) };
  };
  return {
    exec,
    async run(cmd, timeoutSec) {
      const r = await exec(cmd, timeoutSec);
      if (r.code !== 0) throw new Error(`"${cmd}" exited ${r.code} in the guest:\n${r.output}`);
      return r.output;
    },
    transcript: () => con.buf,
    close,
  };
}

/**
 * The ONLY code in snf-image that runs qemu. It builds the helper VM's
 * command line (microvm, PVH kernel, small initramfs, read-only tools disk,
 * instance disks as raw virtio disks identified by serial, params through
 * fw_cfg, three serial channels to host-side unix sockets) and owns the VM's
 * lifetime: bounded channel readers, soft/hard timeouts, abort, and always
 * reaping qemu and removing its socket directory.
 *
 * Channels: qemu connects as a client to three unix sockets the host listens
 * on (before -runas drops privileges), so nothing the guest writes touches
 * the host's disk and every byte goes through a bounded reader.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import { onCleanup } from "../cleanup.ts";
import { requireQemu } from "./qemu-bin.ts";
import { SnfError } from "../errors.ts";
import { log } from "../log.ts";
import { FWCFG_PARAMS, type HelperResult, type MonitorEvent, TOOLS_DISK_SERIAL, oneLine, truncateBytes } from "../protocol.ts";
import type { loadHelperImage } from "../helper-image/load.ts";
import { ConsoleReader, MonitorReader, ResultReader } from "./channels.ts";

export const QEMU = "qemu-system-x86_64";
/** TCG translation cache, MiB (see qemuCommandLine). */
export const TCG_TB_SIZE_MIB = 256;
const SANDBOX = "on,obsolete=deny,spawn=deny,resourcecontrol=deny";
/** Grace between SIGTERM and SIGKILL when the caller aborts. */
const ABORT_GRACE_MS = 3000;

export interface HelperVmDisk {
  path: string;
  serial: string;
  readOnly?: boolean;
  /** Filled in by runHelperVm: "none" (O_DIRECT) where it works, else "writeback". */
  cache?: "none" | "writeback";
  /** Filled in by runHelperVm: block device or regular file. */
  kind?: "block" | "file";
}

export interface HelperVmOptions {
  /** The qemu binary: a name on PATH or a path (config QEMU); default qemu-system-x86_64. */
  qemu?: string;
  image: ReturnType<typeof loadHelperImage>;
  disks: HelperVmDisk[];
  paramsFile: string;
  accel: "kvm" | "tcg";
  memoryMiB: number;
  user: string;
  softTimeoutSec: number;
  hardTimeoutSec: number;
  onConsoleLine?: (line: string) => void;
  onMonitorEvent?: (e: MonitorEvent) => void;
  signal?: AbortSignal;
  debug?: boolean;
}

export interface HelperVmOutcome {
  result: HelperResult | null;
  exitCode: number | null;
  signal: string | null;
  timedOut: "soft" | "hard" | null;
  aborted: boolean;
  monitorError?: string;
  /** qemu's own last error line when qemu itself failed (bad disk, user, option). */
  qemuError?: string;
  durationMs: number;
}

export interface QemuContext {
  /** directory holding console.sock, result.sock and monitor.sock */
  runDir: string;
  /** host TSC frequency for tsc_early_khz under TCG (microvm has no other clock calibration) */
  tscKhz: number;
}

export const channelPath = (runDir: string, ch: "console" | "result" | "monitor") => path.join(runDir, `${ch}.sock`);

/** qemu option values: a comma must be doubled. */
const q = (s: string) => s.replaceAll(",", ",,");

export function hostTscKhz(): number {
  try {
    const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return Math.round(Number(m[1]) * 1000);
  } catch {}
  return 2_000_000;
}

export function kernelCommandLine(o: Pick<HelperVmOptions, "accel" | "debug">, tscKhz: number): string {
  const args = ["console=ttyS0", "panic=-1", "8250.nr_uarts=3"];
  if (!o.debug) args.push("quiet");
  if (o.accel === "tcg") args.push(`tsc_early_khz=${tscKhz}`);
  return args.join(" ");
}

/** The full argv (pure given ctx). No secret is ever part of it: params go by file. */
export function qemuCommandLine(o: HelperVmOptions, ctx: QemuContext = { runDir: "/run/snf-image/vm", tscKhz: hostTscKhz() }): string[] {
  const a: string[] = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"];
  // Under TCG the translated-code cache may grow to 1 GiB of host memory. Bound it: measured on
  // the bookworm deploy, 256 MiB is as fast as unbounded (helper 7.0 s, qemu RSS 450 MiB),
  // 128 MiB costs 0.5 s (RSS 401 MiB), 64 MiB 1.1 s (RSS 324 MiB).
  a.push("-accel", o.accel === "tcg" ? `tcg,tb-size=${TCG_TB_SIZE_MIB}` : o.accel, "-cpu", o.accel === "kvm" ? "host" : "max");
  a.push("-M", "microvm", "-m", String(o.memoryMiB), "-smp", "1");
  a.push("-kernel", o.image.kernel, "-initrd", o.image.initrd, "-append", kernelCommandLine(o, ctx.tscKhz));
  o.disks.forEach((d, i) => {
    const kind = d.kind ?? (d.path.startsWith("/dev/") ? "block" : "file");
    const cache = d.cache ?? "none";
    const drive = [
      `id=disk${i}`, "if=none", "format=raw",
      `file.driver=${kind === "block" ? "host_device" : "file"}`, `file.filename=${q(d.path)}`,
      `cache=${cache}`, `aio=${cache === "none" ? "native" : "threads"}`,
      ...(d.readOnly ? ["readonly=on"] : []),
    ];
    a.push("-drive", drive.join(","), "-device", `virtio-blk-device,drive=disk${i},serial=${q(d.serial)}`);
  });
  a.push(
    "-drive", `id=tools,if=none,format=raw,file.driver=file,file.filename=${q(o.image.tools)},readonly=on`,
    "-device", `virtio-blk-device,drive=tools,serial=${TOOLS_DISK_SERIAL}`,
  );
  a.push("-fw_cfg", `name=${FWCFG_PARAMS},file=${q(o.paramsFile)}`);
  a.push("-device", "virtio-rng-device");
  a.push("-chardev", `socket,id=console,path=${q(channelPath(ctx.runDir, "console"))}`, "-serial", "chardev:console");
  a.push("-chardev", `socket,id=result,path=${q(channelPath(ctx.runDir, "result"))}`, "-device", "isa-serial,chardev=result,index=1");
  a.push("-chardev", `socket,id=monitor,path=${q(channelPath(ctx.runDir, "monitor"))}`, "-device", "isa-serial,chardev=monitor,index=2");
  a.push("-runas", o.user, "-sandbox", SANDBOX);
  return a;
}

/** O_DIRECT works on block devices and most filesystems, not on tmpfs. */
function probeDisk(p: string): { kind: "block" | "file"; cache: "none" | "writeback" } {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new SnfError(`disk ${p} not found`);
  }
  if (!st.isBlockDevice() && !st.isFile()) throw new SnfError(`disk ${p} is neither a block device nor a file`);
  const kind = st.isBlockDevice() ? "block" : "file";
  try {
    fs.closeSync(fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_DIRECT));
    return { kind, cache: "none" };
  } catch {
    return { kind, cache: "writeback" };
  }
}

interface Channel {
  listener: UnixSocketListener<undefined>;
  closed: Promise<void>;
}

function listenChannel(file: string, onData: (b: Uint8Array) => void, onEnd: () => void): Channel {
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let peer: Socket<undefined> | null = null;
  const listener = Bun.listen<undefined>({
    unix: file,
    socket: {
      open(s) {
        if (peer) s.end(); // one writer only: qemu
        else peer = s;
      },
      data(s, d) {
        if (s === peer) onData(d);
      },
      close(s) {
        if (s === peer) {
          onEnd();
          resolveClosed();
        }
      },
      error(s) {
        if (s === peer) {
          onEnd();
          resolveClosed();
        }
      },
    },
  });
  return { listener, closed };
}

export async function runHelperVm(o: HelperVmOptions): Promise<HelperVmOutcome> {
  const started = performance.now();
  const qemu = requireQemu(o.qemu ?? QEMU);
  const pst = fs.statSync(o.paramsFile, { throwIfNoEntry: false });
  if (!pst?.isFile()) throw new SnfError(`helper parameters file ${o.paramsFile} not found`);
  if (pst.mode & 0o077) throw new SnfError(`helper parameters file ${o.paramsFile} must not be readable by others (mode 0600)`);
  if (!(o.memoryMiB >= 64 && o.memoryMiB <= 65536)) throw new SnfError(`bad helper VM memory ${o.memoryMiB} MiB`);
  if (!(o.softTimeoutSec > 0 && o.hardTimeoutSec >= 0)) throw new SnfError("bad helper VM timeouts");
  const disks = o.disks.map((d) => ({ ...probeDisk(d.path), ...d }));
  if (o.signal?.aborted) {
    return { result: null, exitCode: null, signal: null, timedOut: null, aborted: true, durationMs: 0 };
  }

  // unix socket paths are limited to 107 bytes
  const base = os.tmpdir().length > 60 ? "/tmp" : os.tmpdir();
  const runDir = fs.mkdtempSync(path.join(base, "snf-vm-"));
  fs.chmodSync(runDir, 0o700);
  const undoDir = onCleanup(`remove ${runDir}`, () => fs.rmSync(runDir, { recursive: true, force: true }));

  const consoleR = new ConsoleReader(o.onConsoleLine ?? ((l) => log.info(`helper: ${l}`)));
  const resultR = new ResultReader();
  const monitorR = new MonitorReader((e) => {
    try {
      o.onMonitorEvent?.(e);
    } catch (err) {
      log.warn(`monitor event handler failed: ${(err as Error).message}`);
    }
  });
  const channels: Channel[] = [];
  const stopListeners = () => {
    for (const c of channels) c.listener.stop(true);
  };
  const undoListeners = onCleanup("stop helper VM channel listeners", stopListeners);

  let proc: ReturnType<typeof Bun.spawn> | null = null;
  const killNow = () => {
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  };
  let undoProc = () => {};
  const timers: ReturnType<typeof setTimeout>[] = [];
  let timedOut: "soft" | "hard" | null = null;
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    terminate(ABORT_GRACE_MS, null);
  };
  let terminating = false;
  const terminate = (graceMs: number, reason: "soft" | null) => {
    if (!proc || terminating) return;
    terminating = true;
    if (reason) timedOut = reason;
    proc.kill("SIGTERM");
    timers.push(
      setTimeout(() => {
        if (proc && proc.exitCode === null && proc.signalCode === null) {
          if (reason) timedOut = "hard";
          proc.kill("SIGKILL");
        }
      }, graceMs),
    );
  };

  try {
    channels.push(
      listenChannel(channelPath(runDir, "console"), (d) => consoleR.push(d), () => consoleR.end()),
      listenChannel(channelPath(runDir, "result"), (d) => resultR.push(d), () => {}),
      listenChannel(channelPath(runDir, "monitor"), (d) => monitorR.push(d), () => monitorR.end()),
    );
    const argv = qemuCommandLine({ ...o, disks }, { runDir, tscKhz: hostTscKhz() });
    argv[0] = qemu;
    log.debug(`starting helper VM: ${argv.join(" ")}`);
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    process.on("exit", killNow);
    undoProc = onCleanup("kill helper VM", async () => {
      killNow();
      await proc?.exited;
    });
    o.signal?.addEventListener("abort", onAbort, { once: true });
    timers.push(setTimeout(() => terminate(o.hardTimeoutSec * 1000, "soft"), o.softTimeoutSec * 1000));

    const stderrTail = readTail(proc.stderr as ReadableStream<Uint8Array>, 4096);
    const exitCode = await proc.exited;
    // qemu is gone: its ends of the sockets are closed; let the readers drain
    await Promise.race([Promise.all(channels.map((c) => c.closed)), Bun.sleep(1000)]);
    const errText = await Promise.race([stderrTail, Bun.sleep(1000).then(() => "")]);
    const sig = proc.signalCode != null ? String(proc.signalCode) : null;
    const outcome: HelperVmOutcome = {
      result: resultR.result(),
      exitCode: sig ? null : exitCode,
      signal: sig,
      timedOut,
      aborted,
      durationMs: Math.round(performance.now() - started),
    };
    if (monitorR.error) outcome.monitorError = monitorR.error;
    const lastErr = errText.trim().split("\n").filter(Boolean).pop();
    if (!timedOut && !aborted && (sig || exitCode !== 0) && lastErr) {
      outcome.qemuError = truncateBytes(oneLine(lastErr), 300);
    }
    return outcome;
  } finally {
    for (const t of timers) clearTimeout(t);
    o.signal?.removeEventListener("abort", onAbort);
    killNow();
    if (proc) await proc.exited;
    process.off("exit", killNow);
    undoProc();
    stopListeners();
    undoListeners();
    fs.rmSync(runDir, { recursive: true, force: true });
    undoDir();
  }
}

/** Keep only the last `max` bytes of a stream. */
async function readTail(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  let tail = Buffer.alloc(0);
  for await (const chunk of stream) {
    tail = Buffer.concat([tail, Buffer.from(chunk)]);
    if (tail.length > max) tail = tail.subarray(tail.length - max);
  }
  return tail.toString("utf8");
}

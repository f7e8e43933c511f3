/**
 * The ONLY code in snf-image that runs qemu. It builds the helper VM's
 * command line (microvm, PVH kernel, small initramfs, read-only tools disk,
 * a virtio-scsi controller, params through fw_cfg, three serial channels and
 * QMP to host-side unix sockets) and owns the VM's lifetime: start (a cold
 * boot, or a resume of a saved state: src/vm/snapshot.ts), hot-adding the
 * instance disks once the helper waits for them (raw SCSI disks identified by
 * serial), bounded channel readers, soft/hard timeouts, abort, and always
 * reaping qemu and removing its socket directory.
 *
 * Channels: qemu connects as a client to three unix sockets the host listens
 * on (before -runas drops privileges), so nothing the guest writes touches
 * the host's disk and every byte goes through a bounded reader.
 *
 * Crash safety: qemu runs on a leash (leashCommand) so that it never outlives
 * its run, whatever kills the run: the parameters (password, host keys) go in
 * an inherited memfd that never touches a filesystem, the environment is
 * minimal, and setpriv/unshare/timeout tie qemu's life to this process and to
 * the hard deadline (see docs/architecture.md, "Crash safety").
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Socket, UnixSocketListener } from "bun";
import { onCleanup } from "../cleanup.ts";
import { diskKind } from "../disk/target.ts";
import { runTempDir } from "../leftovers.ts";
import { memfdWith } from "./memfd.ts";
import { requireQemu } from "./qemu-bin.ts";
import { SnfError } from "../errors.ts";
import { log } from "../log.ts";
import { FWCFG_PARAMS, HELPER_AWAKE_LINE, HELPER_READY_LINE, type HelperResult, type MonitorEvent, TOOLS_DISK_SERIAL, oneLine, truncateBytes } from "../protocol.ts";
import { Qmp } from "./qmp.ts";
import { FdMonitor, socketPair } from "./fdmonitor.ts";
import type { Snapshot, SnapshotWriter } from "./snapshot.ts";
import type { loadHelperImage } from "../helper-image/load.ts";
import { ConsoleReader, MonitorReader, ResultReader } from "./channels.ts";

export const QEMU = "qemu-system-x86_64";
/** TCG translation cache, MiB (see qemuCommandLine). */
export const TCG_TB_SIZE_MIB = 256;
const SANDBOX = "on,obsolete=deny,spawn=deny,resourcecontrol=deny";
/** How long the guest may take to power off after its result line. */
export const POWEROFF_GRACE_MS = 60_000;
/**
 * How long a resumed helper may take from `cont` to HELPER_AWAKE_LINE (at most half the soft
 * timeout). It normally takes well under a second; one that does not wake has touched nothing
 * yet, so the run can boot cold instead of waiting for the soft timeout.
 */
export const WAKE_TIMEOUT_MS = 30_000;
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
  /** The parameter document (may carry secrets): handed to qemu in a memfd, never written to disk. */
  params: string;
  accel: "kvm" | "tcg";
  memoryMiB: number;
  user: string;
  softTimeoutSec: number;
  /** How long the guest may take to power off after its result line (default POWEROFF_GRACE_MS). */
  poweroffGraceMs?: number;
  hardTimeoutSec: number;
  onConsoleLine?: (line: string) => void;
  onMonitorEvent?: (e: MonitorEvent) => void;
  signal?: AbortSignal;
  debug?: boolean;
  /** Resume this saved state instead of booting (same qemu, image and machine: src/vm/snapshot.ts). */
  resume?: Snapshot;
  /** Cold boot only: save the waiting VM's state here before the disks are attached. */
  save?: SnapshotWriter;
  /** Resume only: how long the resumed helper may take to say HELPER_AWAKE_LINE (default WAKE_TIMEOUT_MS). */
  wakeTimeoutMs?: number;
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
  /** How the VM started and how long until its disks were attached (qemu start → disks added). */
  start: { mode: "cold" | "resume"; readyMs: number | null; qmpMs?: number; loadedMs?: number };
  /** The resume failed before the helper read or wrote anything: a cold boot may follow. */
  resumeFailed?: string;
  /** Set by startHelperVm on the cold boot that followed a failed resume: why the resume failed. */
  fellBack?: string;
  /** Attaching the disks failed (a cold boot, or after a resume). */
  attachError?: string;
  /** The state saved on this cold boot (o.save), or why saving failed. */
  saved?: Snapshot;
  saveError?: string;
}

export interface QemuContext {
  /** directory holding console.sock, result.sock and monitor.sock */
  runDir: string;
  /** host TSC frequency for tsc_early_khz under TCG (microvm has no other clock calibration) */
  tscKhz: number;
  /** Inherited descriptors (qemuFds): the disks go in as fd sets, so qemu never opens their paths. */
  fds?: QemuFds;
}

/** Where qemu finds what it inherits: fd 3 the params, then the state, the private monitor, the disks. */
export interface QemuFds {
  state?: number;
  fdmon?: number;
  /** Per disk: the descriptors of its fd set (read-only, and read-write unless the disk is read-only). */
  disks: number[][];
}

export const channelPath = (runDir: string, ch: "console" | "result" | "monitor" | "qmp") => path.join(runDir, `${ch}.sock`);

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
  // Boot trimming (docs/benchmarks.md): no guest-internal mitigations, crypto self-tests or LSMs
  // (the guest runs only our code as root, isolation is the VM); under TCG the TSC is kept (the
  // watchdog wrongly drops it for lossy jiffies on a loaded host).
  const args = ["console=ttyS0", "panic=-1", "8250.nr_uarts=3", "mitigations=off", "cryptomgr.notests", "lsm=capability"];
  if (!o.debug) args.push("quiet");
  if (o.accel === "tcg") args.push(`tsc_early_khz=${tscKhz}`, "tsc=reliable");
  return args.join(" ");
}

/** qemu's parameter fd: the first after stdin/stdout/stderr. */
export const PARAMS_FD = 3;
/** The name under which a cold boot's state file is handed to qemu (getfd on the private monitor). */
const STATE_FD_NAME = "snfstate";
/** qemu's whole environment: nothing from Ganeti (OSP_IMG_PASSWD…) or from the caller. */
export const QEMU_ENV: Record<string, string> = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" };

/**
 * The leash in front of qemu's argv, so that qemu dies with its run and at the
 * hard deadline even when nothing is left to kill it:
 *  - setpriv --pdeathsig KILL: unshare is killed when this process dies (even by SIGKILL);
 *  - unshare --pid --fork --kill-child: `timeout` becomes PID 1 of a new PID namespace and is
 *    killed when unshare dies; when a namespace's PID 1 dies the kernel kills every process in
 *    it, qemu included. (qemu itself cannot carry a parent-death signal: -runas clears it.)
 *  - timeout -s KILL DEADLINE: kills qemu at soft+hard timeout even if this process hangs.
 * Signals for qemu go to `timeout` (it forwards SIGTERM to qemu); SIGKILL to it ends them all.
 */
export function leashCommand(deadlineSec: number, tools: { setpriv: string; unshare: string; timeout: string } = { setpriv: "setpriv", unshare: "unshare", timeout: "timeout" }): string[] {
  return [
    tools.setpriv, "--pdeathsig", "KILL", "--",
    tools.unshare, "--pid", "--fork", "--kill-child=KILL", "--",
    tools.timeout, "--signal=KILL", `${Math.max(1, Math.ceil(deadlineSec))}s`,
  ];
}

function leashTools(): { setpriv: string; unshare: string; timeout: string } {
  const find = (name: string, pkg: string) => {
    const p = Bun.which(name, { PATH: QEMU_ENV.PATH! });
    if (!p) throw new SnfError(`${name} not found: install ${pkg}`);
    return p;
  };
  return { setpriv: find("setpriv", "util-linux"), unshare: find("unshare", "util-linux"), timeout: find("timeout", "coreutils") };
}

/** The full argv (pure given ctx). No secret is ever part of it: params go by an inherited fd. */
export function qemuCommandLine(o: HelperVmOptions, ctx: QemuContext = { runDir: "/run/snf-image/vm", tscKhz: hostTscKhz() }): string[] {
  const a: string[] = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"];
  // Under TCG the translated-code cache may grow to 1 GiB of host memory. Bound it: measured on
  // the bookworm deploy, 256 MiB is as fast as unbounded (helper 7.0 s, qemu RSS 450 MiB),
  // 128 MiB costs 0.5 s (RSS 401 MiB), 64 MiB 1.1 s (RSS 324 MiB).
  a.push("-accel", o.accel === "tcg" ? `tcg,tb-size=${TCG_TB_SIZE_MIB}` : o.accel, "-cpu", o.accel === "kvm" ? "host" : "max");
  a.push("-M", "microvm", "-m", String(o.memoryMiB), "-smp", "1");
  // a resume must present the command line the saved guest booted with (tsc_early_khz varies)
  a.push("-kernel", o.image.kernel, "-initrd", o.image.initrd, "-append", o.resume?.cmdline ?? kernelCommandLine(o, ctx.tscKhz));
  // Instance disks: block backends only; their SCSI devices are hot-added once the helper waits
  // for them (attach() in runHelperVm), so that a cold boot and a resumed state see the same machine.
  o.disks.forEach((d, i) => {
    const kind = d.kind ?? (d.path.startsWith("/dev/") ? "block" : "file");
    const cache = d.cache ?? "none";
    const drive = [
      `id=disk${i}`, "if=none", "format=raw",
      `file.driver=${kind === "block" ? "host_device" : "file"}`,
      `file.filename=${ctx.fds ? `/dev/fdset/${i + 1}` : q(d.path)}`,
      `cache=${cache}`, `aio=${cache === "none" ? "native" : "threads"}`,
      ...(d.readOnly ? ["readonly=on"] : []),
    ];
    // qemu opens a backend read-only until a device wants to write: the set holds both modes
    // (opaque: the path, so that ps and the leftover sweep can tell which disk a qemu works on)
    for (const fd of ctx.fds?.disks[i] ?? []) a.push("-add-fd", `fd=${fd},set=${i + 1},opaque=${q(d.path)}`);
    a.push("-drive", drive.join(","));
  });
  a.push(
    "-drive", `id=tools,if=none,format=raw,file.driver=file,file.filename=${q(o.image.tools)},readonly=on`,
    "-device", `virtio-blk-device,drive=tools,serial=${TOOLS_DISK_SERIAL}`,
  );
  a.push("-fw_cfg", `name=${FWCFG_PARAMS},file=/proc/self/fd/${PARAMS_FD}`);
  a.push("-device", "virtio-rng-device", "-device", "virtio-scsi-device,id=scsi0");
  a.push("-chardev", `socket,id=console,path=${q(channelPath(ctx.runDir, "console"))}`, "-serial", "chardev:console");
  a.push("-chardev", `socket,id=result,path=${q(channelPath(ctx.runDir, "result"))}`, "-device", "isa-serial,chardev=result,index=1");
  a.push("-chardev", `socket,id=monitor,path=${q(channelPath(ctx.runDir, "monitor"))}`, "-device", "isa-serial,chardev=monitor,index=2");
  a.push("-chardev", `socket,id=qmp,path=${q(channelPath(ctx.runDir, "qmp"))}`, "-mon", "chardev=qmp,mode=control");
  if (ctx.fds?.fdmon !== undefined) a.push("-chardev", `socket,id=fdmon,fd=${ctx.fds.fdmon}`, "-mon", "chardev=fdmon,mode=control");
  if (o.resume) a.push("-incoming", `fd:${ctx.fds?.state ?? "missing"}`, "-S");
  a.push("-runas", o.user, "-sandbox", SANDBOX);
  return a;
}

/** O_DIRECT works on block devices and most filesystems, not on tmpfs. */
function probeDisk(p: string): { kind: "block" | "file"; cache: "none" | "writeback" } {
  const kind = diskKind(p);
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
  const leash = leashTools();
  if (!(o.memoryMiB >= 64 && o.memoryMiB <= 65536)) throw new SnfError(`bad helper VM memory ${o.memoryMiB} MiB`);
  if (!(o.softTimeoutSec > 0 && o.hardTimeoutSec >= 0)) throw new SnfError("bad helper VM timeouts");
  const disks = o.disks.map((d) => ({ ...probeDisk(d.path), ...d }));
  if (o.signal?.aborted) {
    return { result: null, exitCode: null, signal: null, timedOut: null, aborted: true, durationMs: 0, start: { mode: o.resume ? "resume" : "cold", readyMs: null } };
  }

  const tscKhz = hostTscKhz();
  // unix socket paths are limited to 107 bytes
  const base = os.tmpdir().length > 60 ? "/tmp" : os.tmpdir();
  const runDir = runTempDir("vm", base);
  const undoDir = onCleanup(`remove ${runDir}`, () => fs.rmSync(runDir, { recursive: true, force: true }));

  let awake = false;
  let onReady: () => void = () => {};
  let onGone: (e: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onGone = reject;
  });
  ready.catch(() => {});
  const showLine = o.onConsoleLine ?? ((l: string) => log.info(`helper: ${l}`));
  const consoleR = new ConsoleReader((l) => {
    if (l === HELPER_READY_LINE) onReady();
    else if (l === HELPER_AWAKE_LINE) awake = true;
    showLine(l);
  });
  // The helper syncs the disks before it reports; after its result line only `sync; poweroff -f`
  // is left. A guest that hangs there (seen once under TCG on a loaded host) is stopped after
  // POWEROFF_GRACE_MS and judged by its result, instead of failing at the soft timeout.
  const resultR = new ResultReader(() => {
    timers.push(
      setTimeout(() => {
        if (!running() || terminating) return;
        log.warn(`helper VM reported its result but did not power off within ${(o.poweroffGraceMs ?? POWEROFF_GRACE_MS) / 1000} s: stopping it`);
        terminate(ABORT_GRACE_MS, null);
      }, o.poweroffGraceMs ?? POWEROFF_GRACE_MS),
    );
  });
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
  const running = () => proc !== null && proc.exitCode === null && proc.signalCode === null;
  /** PID 1 of qemu's namespace (`timeout`), once unshare has forked it. */
  const nsInit = (): number | null => {
    if (!proc) return null;
    try {
      const kids = fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
      return kids.length ? Number(kids[0]) : null;
    } catch {
      return null;
    }
  };
  /** SIGTERM reaches qemu through `timeout`; SIGKILL to the namespace's PID 1 kills everything in it. */
  const signalVm = (sig: "SIGTERM" | "SIGKILL") => {
    if (!running()) return;
    const init = nsInit();
    try {
      if (init) process.kill(init, sig);
      else proc!.kill(sig);
    } catch {
      proc!.kill(sig);
    }
  };
  const killNow = () => signalVm("SIGKILL");
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
    signalVm("SIGTERM");
    timers.push(
      setTimeout(() => {
        if (running()) {
          if (reason) timedOut = "hard";
          signalVm("SIGKILL");
        }
      }, graceMs),
    );
  };
  let paramsFd: number | null = null;
  let stateFd: number | null = null;
  let fdmon: FdMonitor | null = null;
  let fdmonTheirs: number | null = null;
  const diskFds: number[] = [];
  const deadline = o.softTimeoutSec + o.hardTimeoutSec;
  let spawnedAt = 0;
  const qmp = new Qmp(channelPath(runDir, "qmp"));
  const start: HelperVmOutcome["start"] = { mode: o.resume ? "resume" : "cold", readyMs: null };
  let resumeFailed: string | undefined;
  let attachError: string | undefined;
  let saved: HelperVmOutcome["saved"];
  let saveError: string | undefined;
  let exited = false;

  /**
   * Bring the VM to "waiting for its disks" (resume: the incoming state is loaded and the VM is
   * paused; cold: the helper printed HELPER_READY_LINE), save it if asked, hot-add the instance
   * disks as SCSI disks and let it run. Any failure stops the VM: no disk is ever half attached.
   */
  const attach = async (): Promise<void> => {
    const sinceSpawn = () => Math.round(performance.now() - spawnedAt);
    // qemu opens QMP early in its start-up; a loaded host may still take a while
    const qmpWaitMs = Math.min(60, o.softTimeoutSec) * 1000;
    if (o.resume) {
      // until a disk is attached, a failed resume touched nothing: the caller may boot instead
      try {
        await qmp.connect(qmpWaitMs);
        start.qmpMs = sinceSpawn();
        await qmp.waitStatus(["paused"], Math.min(60, o.softTimeoutSec) * 1000, "loading the saved helper VM");
        start.loadedMs = sinceSpawn();
      } catch (e) {
        resumeFailed = truncateBytes(oneLine((e as Error).message), 300);
        throw e;
      }
    } else {
      await qmp.connect(qmpWaitMs);
      await ready;
      if (o.save) {
        try {
          if (!fdmon) throw new Error("no private monitor");
          await fdmon.connect();
          await qmp.cmd("stop");
          await qmp.cmd("migrate-set-parameters", { "max-bandwidth": 64 * 1024 * 1024 * 1024 });
          // the state file goes to qemu as a descriptor: it runs as HELPER_USER and could not open it
          await fdmon.cmd("getfd", { fdname: STATE_FD_NAME }, undefined, o.save.fd);
          await fdmon.cmd("migrate", { uri: `fd:${STATE_FD_NAME}` });
          for (;;) {
            const r = (await qmp.cmd("query-migrate")) as { status?: string; "error-desc"?: string };
            if (r.status === "completed") break;
            if (r.status === "failed" || r.status === "cancelled") throw new Error(`saving the helper VM failed: ${oneLine(r["error-desc"] ?? r.status)}`);
            await Bun.sleep(10);
          }
          saved = o.save.commit(kernelCommandLine(o, tscKhz));
        } catch (e) {
          saveError = truncateBytes(oneLine((e as Error).message), 300);
          o.save.abort();
        }
        // a migration leaves the block backends inactive: running again re-activates them
        // before a device may claim them (the helper keeps waiting meanwhile)
        const st = (await qmp.cmd("query-status")) as { status?: string };
        if (st.status !== "running") await qmp.cmd("cont");
      }
    }
    for (const [i, d] of disks.entries()) {
      await qmp.cmd("device_add", { driver: "scsi-hd", id: `sd${i}`, drive: `disk${i}`, bus: "scsi0.0", channel: 0, "scsi-id": i, lun: 0, serial: d.serial });
    }
    if (o.resume) {
      await qmp.cmd("cont");
      const wakeMs = Math.min(o.wakeTimeoutMs ?? WAKE_TIMEOUT_MS, (o.softTimeoutSec * 1000) / 2);
      timers.push(
        setTimeout(() => {
          if (awake || exited || terminating) return;
          // before HELPER_AWAKE_LINE the helper has read nothing and written nothing
          resumeFailed = `the resumed helper VM did not wake within ${wakeMs / 1000} s of getting its disks`;
          killNow();
        }, wakeMs),
      );
    }
    start.readyMs = sinceSpawn();
  };

  try {
    channels.push(
      listenChannel(channelPath(runDir, "console"), (d) => consoleR.push(d), () => consoleR.end()),
      listenChannel(channelPath(runDir, "result"), (d) => resultR.push(d), () => {}),
      listenChannel(channelPath(runDir, "monitor"), (d) => monitorR.push(d), () => monitorR.end()),
    );
    paramsFd = memfdWith("snf-image-params", o.params);
    // everything qemu gets goes in as an open descriptor, in this order after the params (fd 3)
    const inherited: number[] = [paramsFd];
    const fds: QemuFds = { disks: [] };
    if (o.resume) {
      stateFd = fs.openSync(o.resume.state, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      fds.state = 3 + inherited.push(stateFd) - 1;
    }
    if (o.save) {
      const [ours, theirs] = socketPair();
      fdmon = new FdMonitor(ours);
      fdmonTheirs = theirs;
      fds.fdmon = 3 + inherited.push(theirs) - 1;
    }
    for (const d of disks) {
      const direct = d.cache === "none" ? fs.constants.O_DIRECT : 0;
      const set: number[] = [];
      for (const mode of d.readOnly ? [fs.constants.O_RDONLY] : [fs.constants.O_RDONLY, fs.constants.O_RDWR]) {
        const fd = fs.openSync(d.path, mode | direct);
        diskFds.push(fd);
        set.push(3 + inherited.push(fd) - 1);
      }
      fds.disks.push(set);
    }
    const argv = qemuCommandLine({ ...o, disks }, { runDir, tscKhz, fds });
    argv[0] = qemu;
    log.debug(`starting helper VM: ${argv.join(" ")}`);
    spawnedAt = performance.now();
    proc = Bun.spawn([...leashCommand(deadline, leash), ...argv], { stdio: ["ignore", "ignore", "pipe", ...inherited] as never, env: QEMU_ENV });
    // qemu holds its own copies of the fds: ours go at once
    fs.closeSync(paramsFd);
    paramsFd = null;
    if (stateFd !== null) fs.closeSync(stateFd);
    stateFd = null;
    for (const fd of diskFds.splice(0)) fs.closeSync(fd);
    if (fdmonTheirs !== null) fs.closeSync(fdmonTheirs);
    fdmonTheirs = null;
    const attached = attach().catch((e) => {
      log.debug(`helper VM start failed: ${(e as Error).message}`);
      // qemu already gone or being stopped, or the soft timeout is due (a wait that expired
      // together with it, e.g. after this process was stopped): the timers and the exit tell the story
      if (exited || terminating || performance.now() - spawnedAt >= o.softTimeoutSec * 1000) return;
      if (!resumeFailed) attachError = truncateBytes(oneLine((e as Error).message), 300);
      killNow();
    });
    process.on("exit", killNow);
    undoProc = onCleanup("kill helper VM", async () => {
      killNow();
      await proc?.exited;
    });
    o.signal?.addEventListener("abort", onAbort, { once: true });
    timers.push(setTimeout(() => terminate(o.hardTimeoutSec * 1000, "soft"), o.softTimeoutSec * 1000));

    const stderrTail = readTail(proc.stderr as ReadableStream<Uint8Array>, 4096);
    const exitCode = await proc.exited;
    exited = true;
    // whatever attach() was waiting for will not come: let it settle first
    onGone(new Error("qemu exited"));
    qmp.stop();
    await Promise.race([attached, Bun.sleep(1000)]);
    // qemu is gone: its ends of the sockets are closed; let the readers drain
    await Promise.race([Promise.all(channels.map((c) => c.closed)), Bun.sleep(1000)]);
    const errText = await Promise.race([stderrTail, Bun.sleep(1000).then(() => "")]);
    const sig = proc.signalCode != null ? String(proc.signalCode) : null;
    // the leash's `timeout` killed qemu at the deadline (it may beat our own hard timer, e.g. when
    // this process was stopped): it exits 137 (128 + SIGKILL)
    if (!aborted && !sig && (exitCode === 124 || exitCode === 137) && performance.now() - spawnedAt >= deadline * 1000) timedOut = "hard";
    const outcome: HelperVmOutcome = {
      result: resultR.result(),
      exitCode: sig ? null : exitCode,
      signal: sig,
      timedOut,
      aborted,
      durationMs: Math.round(performance.now() - started),
      start,
    };
    if (resumeFailed) outcome.resumeFailed = resumeFailed;
    if (attachError) outcome.attachError = attachError;
    if (saved) outcome.saved = saved;
    if (saveError) outcome.saveError = saveError;
    if (monitorR.error) outcome.monitorError = monitorR.error;
    const lastErr = errText.trim().split("\n").filter(Boolean).pop();
    if (o.save && !saved && !saveError) {
      saveError = "the helper VM ended before it could be saved";
      outcome.saveError = saveError;
      o.save.abort();
    }
    if (!timedOut && !aborted && (sig || exitCode !== 0) && lastErr) {
      outcome.qemuError = truncateBytes(oneLine(lastErr), 300);
    }
    return outcome;
  } finally {
    if (paramsFd !== null) fs.closeSync(paramsFd);
    if (stateFd !== null) fs.closeSync(stateFd);
    if (fdmonTheirs !== null) fs.closeSync(fdmonTheirs);
    for (const fd of diskFds) fs.closeSync(fd);
    fdmon?.close();
    qmp.stop();
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

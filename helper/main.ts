/**
 * The helper executable (runs inside the helper VM as root, started by the
 * init2 shim). Says it is ready and waits until the host hot-adds the
 * instance disks (the VM may have been saved while waiting and resumed for
 * this run: src/vm/snapshot.ts), reseeds the kernel's random generator and
 * sets the clock from the host, reads the parameters from fw_cfg, finds the
 * instance disk by its serial, settles OSFAMILY/ROOT_PARTITION, runs the task table and writes
 * exactly one result line: SUCCESS or "ERROR: <task>: <cause>". It never
 * throws: every failure becomes an ERROR result, and it always exits 0 (the
 * shim powers the VM off).
 *
 * Environment overrides, for tests only:
 *   SNF_HELPER_PARAMS   params file (default: fw_cfg)
 *   SNF_HELPER_RESULT / SNF_HELPER_MONITOR   channel paths (default ttyS1/ttyS2)
 *   SNF_HELPER_DISK     the target disk node (default: found by serial)
 *   SNF_HELPER_ROOT     image mount point (default /mnt/image)
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { decodeParams, diskSerial, FWCFG_PARAMS, HELPER_AWAKE_LINE, HELPER_READY_LINE, PARAMS_MAX_BYTES, PROTOCOL_VERSION, type HelperParams, type HelperResult } from "../src/protocol.ts";
import { openChannels, type Channels } from "./channels.ts";
import { findDiskBySerial, readDisk, waitForDisks } from "./disk.ts";
import { loadModule, reseed, setClock } from "./lib/wake.ts";
import { libc } from "./lib/libc.ts";
import { cryptFfi } from "./lib/crypt.ts";
import { run, HELPER_PATH } from "./lib/exec.ts";
import { imageMounts } from "./lib/mount.ts";
import { makeProps } from "./props.ts";
import { mountProbe, resolveRoot } from "./os/detect.ts";
import { errorText, runTasks } from "./runner.ts";
import { TASKS } from "./tasks/index.ts";
import type { Task, TaskContext } from "./task.ts";

const FWCFG_DIR = "/sys/firmware/qemu_fw_cfg";

/** Guest clock (s since kernel start), for the HELPER_DEBUG breakdown; null outside the VM. */
function uptime(): string | null {
  try {
    return fs.readFileSync("/proc/uptime", "utf8").split(" ")[0]!;
  } catch {
    return null;
  }
}
const startedAt = uptime();
/** HELPER_DEBUG boots the kernel without "quiet" (as the shims, which mark their steps too). */
function debugBoot(): boolean {
  try {
    return !/(^|\s)quiet(\s|$)/.test(fs.readFileSync("/proc/cmdline", "utf8"));
  } catch {
    return false;
  }
}

/**
 * qemu_fw_cfg reads fw_cfg's file directory when it binds to the device, so it is loaded only once
 * the helper is woken: a VM saved while waiting must see the document of the run that resumed it.
 * (Binding it again does not work: the 6.1 driver refuses a second probe.) Loaded with
 * finit_module, no tool start under emulation; modprobe if that fails.
 */
async function loadFwCfg(): Promise<void> {
  if (fs.existsSync(FWCFG_DIR)) return;
  if (!loadModule("qemu_fw_cfg")) await run(["modprobe", "qemu_fw_cfg"], { allowFail: true });
}

async function readParamsText(env: Record<string, string | undefined>): Promise<string> {
  const file = env.SNF_HELPER_PARAMS || `${FWCFG_DIR}/by_name/${FWCFG_PARAMS}/raw`;
  if (!env.SNF_HELPER_PARAMS) await loadFwCfg();
  for (let i = 0; i < 50 && !fs.existsSync(file); i++) await Bun.sleep(20);
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new Error(`no parameter document at ${file}`);
  }
  if (st.size > PARAMS_MAX_BYTES) throw new Error("parameter document too large");
  return fs.readFileSync(file, "utf8");
}

/**
 * In the VM: say we are ready and wait for the first SCSI disk (the host
 * hot-adds the instance disks; nothing else ever adds one). The host may save
 * the VM while it waits here and resume that state for later runs, so
 * nothing before this point may depend on the run: no parameter, no disk,
 * no random number.
 */
async function waitForWake(sysBlock = "/sys/block"): Promise<void> {
  fs.writeSync(2, `${HELPER_READY_LINE}\n`);
  for (;;) {
    try {
      if (fs.readdirSync(sysBlock).some((n) => n.startsWith("sd"))) {
        fs.writeSync(2, `${HELPER_AWAKE_LINE}\n`);
        return;
      }
    } catch {
      // sysfs not there yet
    }
    await Bun.sleep(5);
  }
}

/**
 * Before saying ready: use once what every run uses first, so that a VM saved while it waits
 * holds it ready — Bun's lazily compiled spawn and stream code and the protocol's decoder in the
 * heap, the first tools and their libraries in the page cache. (A resume skips all of it; a
 * cold boot pays it once.) Nothing here depends on the run, and no failure here matters.
 */
async function warmUp(): Promise<void> {
  for (const cmd of [["sfdisk", "--version"], ["blkid", "-V"], ["e2fsck", "-V"], ["resize2fs", "-P", "/dev/null"], ["mount", "-V"], ["dumpe2fs", "-V"]]) {
    await run(cmd, { allowFail: true, input: "" }).catch(() => {});
  }
  try {
    decodeParams(JSON.stringify({ protocol: PROTOCOL_VERSION, mode: "create", hostname: "warm-up", imgFormat: "diskdump", properties: {}, disks: [{ index: 0, serial: diskSerial(0) }] }));
    // bun:ffi compiles its trampolines when a library is opened: libc (wake, BLKRRPART), libcrypt
    libc();
    cryptFfi("warm-up", "$6$rounds=1000$warmup$");
  } catch {
    // only warming up
  }
}

/** After a resume: fresh kernel randomness and the host's clock before anything else runs. */
function wake(params: HelperParams): void {
  if (!params.seed) throw new Error("the host sent no random seed");
  reseed(Buffer.from(params.seed, "base64"));
  if (params.now) setClock(params.now);
}

async function syncDisks(): Promise<void> {
  await run(["sync"], { allowFail: true });
}

/** Stage label for failures outside tasks. */
async function step<T>(label: string, f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new Error(`${label}: ${errorText(e)}`);
  }
}

export async function helperMain(env: Record<string, string | undefined> = process.env, tasks: readonly Task[] = TASKS): Promise<HelperResult> {
  const ch: Channels = openChannels(env);
  if (!process.env.PATH) process.env.PATH = HELPER_PATH;
  let scratch: string | undefined;
  const root = path.resolve(env.SNF_HELPER_ROOT || "/mnt/image");
  let result: HelperResult;
  try {
    const inVm = !env.SNF_HELPER_PARAMS;
    const info = (msg: string): void => ch.console(msg);
    const marks = startedAt !== null && inVm && debugBoot();
    const mark = (what: string): void => {
      if (marks) info(`guest clock ${uptime()} s: ${what}`);
    };
    if (marks) info(`guest clock ${startedAt} s: helper started`);
    if (inVm) {
      await warmUp();
      mark("ready, waiting for the disks");
      await waitForWake();
      mark("first disk seen");
    }
    const params: HelperParams = await step("reading parameters", async () => decodeParams(await readParamsText(env)));
    if (inVm) await step("waking up", () => wake(params));
    mark("parameters read, reseeded");
    const warn = (msg: string): void => ch.monitor({ kind: "WARNING", text: msg });
    const props = makeProps(params.properties, warn);
    scratch = fs.mkdtempSync(path.join(env.TMPDIR || "/tmp", "snf-helper-"));
    const disk0 = params.disks.find((d) => d.index === 0);
    const serial = disk0?.serial ?? diskSerial(0);
    if (inVm && !env.SNF_HELPER_DISK) await step("waiting for the instance disks", () => waitForDisks(params.disks.map((d) => d.serial)));
    const dev = await step("finding the instance disk", () => findDiskBySerial(serial, env));
    const disk = await step("reading the partition table", () => readDisk(run, dev));
    mark("partition table read");
    if (props.bool("EXCLUDE_ALL_TASKS")) {
      for (const t of tasks) ch.monitor({ kind: "TASK_SKIP", task: t.name, reason: "EXCLUDE_ALL_TASKS" });
      result = { ok: true };
    } else {
      const rootInfo = await step("finding the root partition", () => resolveRoot(props, disk, mountProbe(imageMounts, path.join(scratch!, "probe"))));
      mark("root partition found");
      info(`OS family ${rootInfo.family}, root partition ${rootInfo.rootPartition.number} (${rootInfo.rootPartition.fsType ?? "unknown fs"})`);
      const ctx: TaskContext = {
        params,
        props,
        disk,
        rootPartition: rootInfo.rootPartition,
        os: { family: rootInfo.family, distro: "unknown" },
        root,
        scratch,
        info,
        warn,
        run: (cmd, opts) => run(cmd, opts),
        async refreshDisk() {
          ctx.disk = await readDisk(run, dev, ctx.disk);
          const rp = ctx.disk.partitions.find((p) => p.number === ctx.rootPartition.number);
          if (!rp) throw new Error(`root partition ${ctx.rootPartition.number} disappeared`);
          ctx.rootPartition = rp;
        },
      };
      result = await runTasks(tasks, ctx, {
        monitor: (e) => ch.monitor(e),
        cleanup: async () => {
          await imageMounts.umountUnder(root, { bestEffort: true });
          await imageMounts.umountAll();
        },
      });
    }
    mark("tasks done");
    if (result.ok) await syncDisks();
  } catch (e) {
    result = { ok: false, error: errorText(e) };
    ch.monitor({ kind: "ERROR", text: result.error });
  }
  // Whatever happened: nothing stays mounted, no key or secret stays in scratch.
  try {
    await imageMounts.umountUnder(root, { bestEffort: true });
    await imageMounts.umountAll();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
    await syncDisks();
  } catch (e) {
    if (result.ok) result = { ok: false, error: `cleanup: ${errorText(e)}` };
  }
  ch.result(result);
  return result;
}

if (import.meta.main) {
  const fatal = (e: unknown): void => {
    try {
      openChannels().result({ ok: false, error: `internal error: ${errorText(e)}` });
    } finally {
      process.exit(0);
    }
  };
  process.on("uncaughtException", fatal);
  process.on("unhandledRejection", fatal);
  helperMain().then(
    () => process.exit(0),
    (e) => fatal(e),
  );
}

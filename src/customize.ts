/**
 * Runs the helper VM over an instance's disks: builds the parameter document,
 * hands it to the VM launcher (src/vm/qemu.ts, the only code that touches
 * qemu), relays console and progress into the log and the monitor, and turns
 * the outcome into success or one SnfError line.
 */
import type { Config } from "./config.ts";
import { SnfError } from "./errors.ts";
import type { CreateEnv, GanetiEnv } from "./ganeti/env.ts";
import { loadHelperImage } from "./helper-image/load.ts";
import { log } from "./log.ts";
import type { Monitor } from "./monitor.ts";
import type { DeployParams } from "./params.ts";
import type { HostKey } from "./hostkeys.ts";
import { PROTOCOL_VERSION, diskSerial, encodeParams, newSeed, type HelperParamsInput, type Nic } from "./protocol.ts";
import { chooseAccel } from "./vm/accel-probe.ts";
import { snapshotDir } from "./vm/snapshot.ts";
import { startHelperVm } from "./vm/start.ts";

export type HelperImage = ReturnType<typeof loadHelperImage>;

/**
 * What a deployment needs from its caller: `create` passes its GanetiEnv,
 * `snf-image deploy` builds this from its command line.
 */
export type DeployInput = Pick<CreateEnv, "osp" | "disks" | "nics" | "disk0"> & { instance: { name: string } };

/** Image properties: host-set < img_properties < inst_properties (keys upper-case). */
export function mergeProperties(hostSet: Record<string, string>, params: Pick<DeployParams, "imgProperties" | "instProperties">): Record<string, string> {
  return { ...hostSet, ...params.imgProperties, ...params.instProperties };
}

export function nicsForHelper(env: Pick<DeployInput, "nics">): Nic[] {
  return env.nics.map((n) => ({
    index: n.index,
    mac: n.mac,
    ip: n.ip,
    mode: n.mode,
    link: n.link,
    name: n.name,
    frontendType: n.frontendType,
    network: n.network
      ? {
          name: n.network.name,
          subnet: n.network.subnet,
          gateway: n.network.gateway,
          subnet6: n.network.subnet6,
          gateway6: n.network.gateway6,
          tags: n.network.tags,
        }
      : undefined,
  }));
}

export function helperParams(o: {
  mode: "create" | "rename";
  env: DeployInput;
  config: Config;
  params?: DeployParams;
  hostProperties?: Record<string, string>;
  hostKeys?: HostKey[];
  /** os_answer_file's bytes, fetched by the host. */
  answerFile?: Uint8Array;
}): HelperParamsInput {
  const { env, config, params } = o;
  return {
    protocol: PROTOCOL_VERSION,
    mode: o.mode,
    hostname: env.instance.name,
    imgFormat: params?.imgFormat ?? "diskdump",
    password: params?.password,
    passwordHash: params?.passwordHash,
    properties: params ? mergeProperties(o.hostProperties ?? {}, params) : { ...(o.hostProperties ?? {}) },
    personality: params?.personality ?? [],
    authKeys: params?.authKeys,
    cloudUserdata: params?.cloudUserdata,
    osProductKey: params?.osProductKey,
    answerFile: o.answerFile === undefined ? undefined : Buffer.from(o.answerFile).toString("base64"),
    windowsTimezone: config.WINDOWS_TIMEZONE,
    nics: nicsForHelper(env),
    dhcpTags: config.DHCP_TAGS,
    statefulDhcpv6Tags: config.STATEFUL_DHCPV6_TAGS,
    statelessDhcpv6Tags: config.STATELESS_DHCPV6_TAGS,
    defaultNicConfig: config.DEFAULT_NIC_CONFIG,
    disks: env.disks.filter((d) => d.path).map((d) => ({ index: d.index, serial: diskSerial(d.index) })),
    hostKeys: o.hostKeys ?? [],
    debug: config.HELPER_DEBUG,
    cloudInitDebug: config.CLOUD_INIT_DEBUG,
    now: Math.floor(Date.now() / 1000),
    seed: newSeed(),
  };
}

export interface CustomizeOutcome {
  durationMs: number;
  tasks: { task: string; ms: number }[];
  accel: string;
}

/** Boot the helper VM over the instance's disks and judge its result. */
export async function runCustomization(o: {
  image: HelperImage;
  env: DeployInput;
  config: Config;
  doc: HelperParamsInput;
  monitor: Monitor;
  signal?: AbortSignal;
}): Promise<CustomizeOutcome> {
  const { config } = o;

  const accel = await chooseAccel(config.HELPER_ACCEL, {
    image: o.image,
    qemu: config.QEMU,
    memoryMiB: config.HELPER_MEMORY,
    user: config.HELPER_USER,
    signal: o.signal,
    cacheDir: config.HELPER_DIR,
  });
  log.info(`helper VM: ${accel.accel} (${accel.reason}), ${config.HELPER_MEMORY} MiB, timeouts ${config.HELPER_SOFT_TIMEOUT}+${config.HELPER_HARD_TIMEOUT} s`);
  const tasks: { task: string; ms: number }[] = [];
  const outcome = await startHelperVm({
    image: o.image,
    qemu: config.QEMU,
    disks: o.env.disks.filter((d) => d.path).map((d) => ({ path: d.path!, serial: diskSerial(d.index) })),
    // the document may carry a password and host keys: it goes to qemu in memory, never to disk
    params: encodeParams(o.doc),
    accel: accel.accel,
    memoryMiB: config.HELPER_MEMORY,
    user: config.HELPER_USER,
    softTimeoutSec: config.HELPER_SOFT_TIMEOUT,
    hardTimeoutSec: config.HELPER_HARD_TIMEOUT,
    debug: config.HELPER_DEBUG,
    signal: o.signal,
    onConsoleLine: (line) => (o.monitor.consoleLine ? o.monitor.consoleLine(line) : process.stderr.write(`HELPER: ${line}\n`)),
    onMonitorEvent: (e) => {
      o.monitor.helperEvent(e);
      if (e.kind === "TASK_END") tasks.push({ task: e.task, ms: e.ms });
      if (e.kind === "TASK_START") log.debug(`helper: task ${e.task} started`);
      else if (e.kind === "TASK_END") log.info(`helper: task ${e.task} done in ${(e.ms / 1000).toFixed(2)} s`);
      else if (e.kind === "TASK_SKIP") log.info(`helper: task ${e.task} skipped${e.reason ? ` (${e.reason})` : ""}`);
      else if (e.kind === "WARNING") log.warn(`helper: ${e.text}`);
      else if (e.kind === "ERROR") log.error(`helper: ${e.text}`);
      else log.info(`helper: ${e.text}`);
    },
  }, snapshotDir(config.HELPER_DIR), config.HELPER_RESUME);
  const how = outcome.start.mode === "resume" ? "resumed from its saved state" : "booted";
  if (outcome.start.readyMs !== null) log.info(`helper VM ${how}; disks attached ${(outcome.start.readyMs / 1000).toFixed(2)} s after qemu started`);
  if (outcome.monitorError) log.warn(`helper monitor channel closed: ${outcome.monitorError}`);
  const secs = (outcome.durationMs / 1000).toFixed(1);
  if (outcome.aborted) throw new SnfError("deployment cancelled: the helper VM was stopped");
  if (outcome.timedOut === "soft")
    throw new SnfError(`helper VM did not finish within HELPER_SOFT_TIMEOUT=${config.HELPER_SOFT_TIMEOUT} s and was stopped with SIGTERM`);
  if (outcome.timedOut === "hard")
    throw new SnfError(`helper VM ignored SIGTERM for HELPER_HARD_TIMEOUT=${config.HELPER_HARD_TIMEOUT} s after HELPER_SOFT_TIMEOUT=${config.HELPER_SOFT_TIMEOUT} s and was killed with SIGKILL`);
  // after the cancel and the timeouts: when qemu was stopped (or this process was, e.g. SIGSTOP),
  // the attach step fails too, but as a consequence, not the cause
  if (outcome.attachError) throw new SnfError(`helper VM: attaching the instance disks failed: ${outcome.attachError}`);
  if (outcome.result && !outcome.result.ok) throw new SnfError(`image customization failed: ${outcome.result.error}`);
  if (!outcome.result) {
    const how = outcome.signal ? `was killed by ${outcome.signal}` : outcome.exitCode === 0 ? "powered off" : `exited with code ${outcome.exitCode}`;
    throw new SnfError(`helper VM ${how} after ${secs} s without reporting a result (see the HELPER: lines above)`);
  }
  if (outcome.exitCode !== 0) log.warn(`qemu exited with code ${outcome.exitCode} after reporting SUCCESS`);
  return { durationMs: outcome.durationMs, tasks, accel: accel.accel };
}

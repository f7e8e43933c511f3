/**
 * `create`: one deployment from the Ganeti environment to SUCCESS
 * (`snf-image deploy` runs the same function with a DeployInput built from
 * its command line).
 *
 *   Ganeti env → config + OS parameters → helper image check → image source →
 *   [IMAGE_VERIFY signature] → disk writer (+ hash) → [hash verdict] →
 *   helper VM (tasks) → result
 *
 * Everything that can be checked before the disk is touched is checked first.
 */
import type { Config } from "./config.ts";
import { runCustomization, helperParams, mergeProperties, type DeployInput } from "./customize.ts";
import { openTarget } from "./disk/target.ts";
import { writeImage } from "./disk/writer.ts";
import { SnfError } from "./errors.ts";
import { generateHostKeys, type HostKey } from "./hostkeys.ts";
import type { RenameEnv } from "./ganeti/env.ts";
import { loadHelperImage } from "./helper-image/load.ts";
import { hostProperties, mbrPrefix, openImage } from "./image/format.ts";
import { resolveImageSource } from "./image/source.ts";
import { prepareVerification } from "./image/verify.ts";
import { log } from "./log.ts";
import { fetchDocument, fetchLimits, redactUrl } from "./net/fetch.ts";
import type { Monitor } from "./monitor.ts";
import { resolveParams } from "./params.ts";
import { ANSWER_FILE_MAX_BYTES } from "./protocol.ts";
import { requireQemu } from "./vm/qemu-bin.ts";

export interface DeployReport {
  copyMs: number;
  bytes: number;
  zeroBytes: number;
  helperMs: number;
  tasks: { task: string; ms: number }[];
  accel: string;
}

export async function deploy(env: DeployInput, config: Config, monitor: Monitor, signal?: AbortSignal): Promise<DeployReport> {
  const { params, notes } = await resolveParams(config, env.osp, signal);
  for (const n of notes) log.warn(n);

  // Fail before touching the disk: helper, qemu, target, source.
  const image = loadHelperImage(config.HELPER_DIR);
  requireQemu(config.QEMU);
  const diskPath = env.disk0;
  const target = await openTarget(diskPath);
  const answerFile = params.osAnswerFile === undefined ? undefined : await fetchAnswerFile(params.osAnswerFile, config, signal);
  const source = await resolveImageSource(params.imgId, { imageDir: config.IMAGE_DIR, format: params.imgFormat, http: fetchLimits(config), signal });
  log.info(`image ${source.display} (${params.imgFormat}${source.size !== null ? `, ${source.size} bytes` : ""}) → ${diskPath} (${target.kind}, ${target.size} bytes)`);
  // IMAGE_VERIFY: signature checked now; the hash is taken during the copy and compared after it.
  const verification = await prepareVerification(source, config, signal);

  // Defaults: the image's own metadata (NAME.meta), then what the host sets for the format;
  // img_properties and inst_properties override both.
  const defaults = { ...(source.properties ?? {}), ...hostProperties(params.imgFormat) };
  if (source.properties) log.info(`image metadata ${source.propertiesFrom}: ${Object.keys(source.properties).sort().join(" ").slice(0, 300)} (defaults below img_properties)`);

  // SSH host keys are made natively while the image is opened and copied (see hostkeys.ts).
  const props = mergeProperties(defaults, params);
  // Made for every non-Windows image whether or not the helper ends up using them (the
  // helper's task table decides; ~0.6 s of host CPU, overlapped with the copy, never on disk).
  const keysWanted = !/^windows/i.test(props.OSFAMILY ?? "");
  const startHostKeys = (): Promise<HostKey[]> => {
    if (!keysWanted) return Promise.resolve([]);
    const p = generateHostKeys(`root@${env.instance.name}`);
    p.catch(() => {});
    return p;
  };
  // started at once: RSA 3072 takes 0.2–1.0 s of CPU, and the helper cannot start without it
  const keys = startHostKeys();

  let copyMs = 0;
  let bytes = 0;
  let zeroBytes = 0;
  if (source.kind === "null") {
    log.info("img_id is null: customizing what is already on the disk");
  } else {
    const opened = await openImage(source, signal, params.imgFormat);
    if (opened.compression) log.info(`image is ${opened.compression}-compressed: decompressing on the fly`);
    if (opened.qcow2) {
      const q = opened.qcow2;
      const note = `qcow2 v${q.version}, ${q.clusterSize}-byte clusters, virtual size ${q.virtualSize} bytes${q.dirty ? ", dirty bit set (refcounts unused when reading)" : ""}`;
      if (params.imgFormat === "qcow2") log.info(`image is ${note}: converting to raw on the fly`);
      else log.warn(`image is ${note} although img_format=${params.imgFormat}: converting to raw on the fly (set img_format=qcow2)`);
    }
    // qcow2 holds a whole disk (diskdump); extdump/ntfsdump get their prefix whatever the container.
    const layout = params.imgFormat === "qcow2" ? "diskdump" : params.imgFormat;
    const prefix = layout === "diskdump" ? undefined : await mbrPrefix(layout, opened.size, target.size);
    const need = opened.size === null ? null : opened.size + (prefix?.length ?? 0);
    if (need !== null && need > target.size) {
      await opened.stream.cancel().catch(() => {});
      throw new SnfError(`image ${source.display} (${need} bytes${prefix ? " with its 1 MiB prefix" : ""}) does not fit disk ${diskPath} (${target.size} bytes)`);
    }
    monitor.info("Starting image copy...");
    const total = opened.size !== null ? opened.size + (prefix?.length ?? 0) : target.size;
    const r = await writeImage(opened.stream, diskPath, {
      prefix,
      expectedSize: opened.size,
      signal,
      progressEveryMs: monitor.progressEveryMs,
      onProgress: (pos) => monitor.copyProgress(pos, total),
      zeroTail: config.ZERO_DISK_TAIL,
    });
    monitor.copyProgress(r.bytes, total, true);
    verification?.finish(diskPath, target.size, monitor);
    monitor.info("Image copy finished.");
    copyMs = r.ms;
    bytes = r.bytes;
    zeroBytes = r.zeroBytes;
    log.info(`copied ${r.bytes} bytes in ${(r.ms / 1000).toFixed(2)} s (${r.zeroBytes} bytes zeroed without writing)`);
    if (config.ZERO_DISK_TAIL !== "no") {
      if (r.tail.method.startsWith("skipped")) log.warn(`ZERO_DISK_TAIL=${config.ZERO_DISK_TAIL}: the ${target.size - r.bytes} bytes past the image were not zeroed (${r.tail.method.slice(9)})`);
      else if (r.tail.bytes) log.info(`zeroed the ${r.tail.bytes} bytes past the image (${r.tail.method}) in ${(r.tail.ms / 1000).toFixed(2)} s`);
    }
  }

  const keysFrom = performance.now();
  const hostKeys = await keys;
  const keysWait = performance.now() - keysFrom;
  if (keysWait > 100) log.info(`waited ${(keysWait / 1000).toFixed(2)} s for the SSH host keys after the copy`);
  const doc = helperParams({ mode: "create", env, config, params, hostProperties: defaults, hostKeys, answerFile });
  const c = await runCustomization({ image, env, config, doc, monitor, signal });
  monitor.info("Image customization finished successfully.");
  return { copyMs, bytes, zeroBytes, helperMs: c.durationMs, tasks: c.tasks, accel: c.accel };
}

/**
 * os_answer_file, fetched here (the helper VM has no network); bounded by
 * ANSWER_FILE_MAX_BYTES. http(s) only: its bytes land in the guest verbatim,
 * so a file:// URL would copy a host file into the instance.
 */
async function fetchAnswerFile(url: string, config: Config, signal?: AbortSignal): Promise<Uint8Array> {
  const bytes = await fetchDocument(url, { what: "os_answer_file", ...fetchLimits(config), maxBytes: ANSWER_FILE_MAX_BYTES, signal });
  if (bytes.length === 0) throw new SnfError(`os_answer_file ${redactUrl(url)} is empty`);
  log.info(`os_answer_file ${redactUrl(url)}: ${bytes.length} bytes`);
  return bytes;
}

/** `rename`: run the helper with AssignHostname only, so the guest follows the new name. */
export async function renameGuest(env: RenameEnv, config: Config, monitor: Monitor, signal?: AbortSignal): Promise<void> {
  const image = loadHelperImage(config.HELPER_DIR);
  requireQemu(config.QEMU);
  await openTarget(env.disk0);
  const doc = helperParams({ mode: "rename", env, config });
  await runCustomization({ image, env, config, doc, monitor, signal });
  log.info(`guest hostname changed from ${env.instance.oldName} to ${env.instance.name}`);
}


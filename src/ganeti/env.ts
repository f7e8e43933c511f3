/**
 * The Ganeti OS interface environment (API 20), as Ganeti 3.0 sets it.
 * See docs/architecture.md and shared/docs/ganeti-os-interface.md.
 * Unknown variables are ignored; a missing required one is a one-line error.
 */
import * as v from "valibot";
import { SnfError } from "../errors.ts";

export const SUPPORTED_API_VERSION = 20;

export type Script = "create" | "import" | "export" | "rename" | "verify";

export interface GanetiDisk {
  index: number;
  path?: string;
  uri?: string;
  access: string;
  uuid?: string;
  sizeMiB?: number;
  name?: string;
  frontendType?: string;
  backendType?: string;
}

export interface GanetiNic {
  index: number;
  mac: string;
  ip?: string;
  mode?: string;
  link?: string;
  bridge?: string;
  name?: string;
  uuid?: string;
  frontendType?: string;
  network?: {
    name?: string;
    uuid?: string;
    subnet?: string;
    gateway?: string;
    subnet6?: string;
    gateway6?: string;
    macPrefix?: string;
    tags: string[];
  };
}

export interface GanetiInstance {
  name: string;
  os?: string;
  uuid?: string;
  primaryNode?: string;
  hypervisor?: string;
  hv: Record<string, string>;
  be: Record<string, string>;
  reinstall: boolean;
  oldName?: string;
}

export interface GanetiEnv {
  apiVersion: number;
  osName: string;
  osVariant: string;
  debugLevel: number;
  /** OS parameters by lower-case name (OSP_IMG_ID → img_id). Set-but-empty counts as defined. */
  osp: Record<string, string>;
  instance?: GanetiInstance;
  disks: GanetiDisk[];
  nics: GanetiNic[];
  /** import/export only */
  transfer?: GanetiTransfer;
}

export interface GanetiTransfer {
  index: number;
  diskPath: string;
  diskUri?: string;
  sizeFd?: number;
}

/** What create has for sure: the instance and the path of disk 0. */
export interface CreateEnv extends GanetiEnv {
  instance: GanetiInstance;
  /** DISK_0_PATH: the disk the image goes onto. */
  disk0: string;
}

/** rename: create's shape plus the old name. */
export interface RenameEnv extends CreateEnv {
  instance: GanetiInstance & { oldName: string };
}

/** import/export: the instance and the disk being moved. */
export interface TransferEnv extends GanetiEnv {
  instance: GanetiInstance;
  transfer: GanetiTransfer;
}

const Int = (name: string, min = 0, max = 1_000_000) =>
  v.pipe(
    v.string(`${name} is missing`),
    v.regex(/^\d+$/, `${name} must be a whole number`),
    v.transform(Number),
    v.minValue(min, `${name} must be at least ${min}`),
    v.maxValue(max, `${name} must be at most ${max}`),
  );

const MacRe = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function need(env: Record<string, string | undefined>, key: string): string {
  const val = env[key];
  if (val === undefined || val === "") throw new SnfError(`Ganeti environment: ${key} is missing`);
  return val;
}

function parseInt(env: Record<string, string | undefined>, key: string, min = 0, max = 1_000_000): number {
  const r = v.safeParse(Int(key, min, max), env[key]);
  if (!r.success) throw new SnfError(`Ganeti environment: ${r.issues[0].message} (got ${JSON.stringify(env[key] ?? "")})`);
  return r.output;
}

const opt = (s: string | undefined) => (s === undefined || s === "" ? undefined : s);

/** What every script gets: API version, OS name/variant, debug level, OS parameters. */
function parseCommon(env: Record<string, string | undefined>): GanetiEnv {
  const apiRaw = need(env, "OS_API_VERSION");
  const apiVersion = Number(apiRaw);
  if (apiVersion !== SUPPORTED_API_VERSION) {
    throw new SnfError(`OS API version ${JSON.stringify(apiRaw)} is not supported: snf-image speaks only API ${SUPPORTED_API_VERSION}`);
  }
  const osp: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) {
    if (k.startsWith("OSP_") && val !== undefined) osp[k.slice(4).toLowerCase()] = val;
  }
  return {
    apiVersion,
    osName: env.OS_NAME ?? "snf-image",
    osVariant: env.OS_VARIANT ?? "",
    debugLevel: env.DEBUG_LEVEL && /^\d+$/.test(env.DEBUG_LEVEL) ? Number(env.DEBUG_LEVEL) : 0,
    osp,
    disks: [],
    nics: [],
  };
}

/** The common part plus the instance, its disks and NICs (every script but verify). */
function parseInstanceEnv(env: Record<string, string | undefined>): GanetiEnv & { instance: GanetiInstance } {
  const hv: Record<string, string> = {};
  const be: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) {
    if (val === undefined) continue;
    if (k.startsWith("INSTANCE_HV_")) hv[k.slice(12)] = val;
    else if (k.startsWith("INSTANCE_BE_")) be[k.slice(12)] = val;
  }
  const out = {
    ...parseCommon(env),
    instance: {
      name: need(env, "INSTANCE_NAME"),
      os: opt(env.INSTANCE_OS),
      uuid: opt(env.INSTANCE_UUID),
      primaryNode: opt(env.INSTANCE_PRIMARY_NODE),
      hypervisor: opt(env.HYPERVISOR),
      hv,
      be,
      reinstall: env.INSTANCE_REINSTALL === "1",
      oldName: opt(env.OLD_INSTANCE_NAME),
    },
  };
  const diskCount = parseInt(env, "DISK_COUNT", 0, 64);
  for (let i = 0; i < diskCount; i++) {
    const p = `DISK_${i}_`;
    const size = env[`${p}SIZE`];
    out.disks.push({
      index: i,
      path: opt(env[`${p}PATH`]),
      uri: opt(env[`${p}URI`]),
      access: env[`${p}ACCESS`] ?? "rw",
      uuid: opt(env[`${p}UUID`]),
      sizeMiB: size && /^\d+$/.test(size) ? Number(size) : undefined,
      name: opt(env[`${p}NAME`]),
      frontendType: opt(env[`${p}FRONTEND_TYPE`]),
      backendType: opt(env[`${p}BACKEND_TYPE`]),
    });
  }
  const nicCount = env.NIC_COUNT === undefined || env.NIC_COUNT === "" ? 0 : parseInt(env, "NIC_COUNT", 0, 64);
  for (let i = 0; i < nicCount; i++) {
    const p = `NIC_${i}_`;
    const mac = need(env, `${p}MAC`).toLowerCase();
    if (!MacRe.test(mac)) throw new SnfError(`Ganeti environment: ${p}MAC ${JSON.stringify(mac)} is not a MAC address`);
    const hasNet = Object.keys(env).some((k) => k.startsWith(`${p}NETWORK_`));
    out.nics.push({
      index: i,
      mac,
      ip: opt(env[`${p}IP`]),
      mode: opt(env[`${p}MODE`]),
      link: opt(env[`${p}LINK`]),
      bridge: opt(env[`${p}BRIDGE`]),
      name: opt(env[`${p}NAME`]),
      uuid: opt(env[`${p}UUID`]),
      frontendType: opt(env[`${p}FRONTEND_TYPE`]),
      network: hasNet
        ? {
            name: opt(env[`${p}NETWORK_NAME`]),
            uuid: opt(env[`${p}NETWORK_UUID`]),
            subnet: opt(env[`${p}NETWORK_SUBNET`]),
            gateway: opt(env[`${p}NETWORK_GATEWAY`]),
            subnet6: opt(env[`${p}NETWORK_SUBNET6`]),
            gateway6: opt(env[`${p}NETWORK_GATEWAY6`]),
            macPrefix: opt(env[`${p}NETWORK_MAC_PREFIX`]),
            tags: (env[`${p}NETWORK_TAGS`] ?? "").split(/\s+/).filter(Boolean),
          }
        : undefined,
    });
  }

  return out;
}

/** create: the instance and DISK_0_PATH are required. */
export function parseCreateEnv(env: Record<string, string | undefined> = process.env): CreateEnv {
  const out = parseInstanceEnv(env);
  const disk0 = out.disks[0];
  if (!disk0) throw new SnfError("Ganeti environment: DISK_COUNT is 0: the instance has no disk to deploy onto");
  if (!disk0.path) throw new SnfError("Ganeti environment: DISK_0_PATH is missing (userspace-only disks are not supported)");
  return { ...out, disk0: disk0.path };
}

/** rename: create's requirements plus OLD_INSTANCE_NAME. */
export function parseRenameEnv(env: Record<string, string | undefined> = process.env): RenameEnv {
  const out = parseCreateEnv(env);
  const oldName = need(env, "OLD_INSTANCE_NAME");
  return { ...out, instance: { ...out.instance, oldName } };
}

/** import/export: <P>_INDEX and <P>_DISK_PATH (or the older <P>_DEVICE) are required. */
export function parseTransferEnv(script: "import" | "export", env: Record<string, string | undefined> = process.env): TransferEnv {
  const out = parseInstanceEnv(env);
  const P = script === "export" ? "EXPORT" : "IMPORT";
  const index = parseInt(env, `${P}_INDEX`, 0, 63);
  const diskPath = opt(env[`${P}_DISK_PATH`]) ?? opt(env[`${P}_DEVICE`]);
  if (!diskPath) throw new SnfError(`Ganeti environment: ${P}_DISK_PATH is missing (URI-only disks are not supported)`);
  const sizeFd = script === "export" && env.EXP_SIZE_FD && /^\d+$/.test(env.EXP_SIZE_FD) ? Number(env.EXP_SIZE_FD) : undefined;
  return { ...out, transfer: { index, diskPath, diskUri: opt(env[`${P}_DISK_URI`]), sizeFd } };
}

/** Parse the environment of one OS script run (verify needs only the common part). */
export function parseGanetiEnv(script: Script, env: Record<string, string | undefined> = process.env): GanetiEnv {
  switch (script) {
    case "verify":
      return parseCommon(env);
    case "create":
      return parseCreateEnv(env);
    case "rename":
      return parseRenameEnv(env);
    case "import":
    case "export":
      return parseTransferEnv(script, env);
  }
}

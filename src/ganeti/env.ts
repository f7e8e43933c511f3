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

export interface GanetiEnv {
  apiVersion: number;
  osName: string;
  osVariant: string;
  debugLevel: number;
  /** OS parameters by lower-case name (OSP_IMG_ID → img_id). Set-but-empty counts as defined. */
  osp: Record<string, string>;
  instance?: {
    name: string;
    os?: string;
    uuid?: string;
    primaryNode?: string;
    hypervisor?: string;
    hv: Record<string, string>;
    be: Record<string, string>;
    reinstall: boolean;
    oldName?: string;
  };
  disks: GanetiDisk[];
  nics: GanetiNic[];
  /** import/export only */
  transfer?: { index: number; diskPath?: string; diskUri?: string; sizeFd?: number };
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

/** Parse the environment of one OS script run. */
export function parseGanetiEnv(script: Script, env: Record<string, string | undefined> = process.env): GanetiEnv {
  const apiRaw = need(env, "OS_API_VERSION");
  const apiVersion = Number(apiRaw);
  if (apiVersion !== SUPPORTED_API_VERSION) {
    throw new SnfError(`OS API version ${JSON.stringify(apiRaw)} is not supported: snf-image speaks only API ${SUPPORTED_API_VERSION}`);
  }
  const osp: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) {
    if (k.startsWith("OSP_") && val !== undefined) osp[k.slice(4).toLowerCase()] = val;
  }
  const out: GanetiEnv = {
    apiVersion,
    osName: env.OS_NAME ?? "snf-image",
    osVariant: env.OS_VARIANT ?? "",
    debugLevel: env.DEBUG_LEVEL && /^\d+$/.test(env.DEBUG_LEVEL) ? Number(env.DEBUG_LEVEL) : 0,
    osp,
    disks: [],
    nics: [],
  };
  if (script === "verify") return out;

  const hv: Record<string, string> = {};
  const be: Record<string, string> = {};
  for (const [k, val] of Object.entries(env)) {
    if (val === undefined) continue;
    if (k.startsWith("INSTANCE_HV_")) hv[k.slice(12)] = val;
    else if (k.startsWith("INSTANCE_BE_")) be[k.slice(12)] = val;
  }
  out.instance = {
    name: need(env, "INSTANCE_NAME"),
    os: opt(env.INSTANCE_OS),
    uuid: opt(env.INSTANCE_UUID),
    primaryNode: opt(env.INSTANCE_PRIMARY_NODE),
    hypervisor: opt(env.HYPERVISOR),
    hv,
    be,
    reinstall: env.INSTANCE_REINSTALL === "1",
    oldName: opt(env.OLD_INSTANCE_NAME),
  };

  const diskCount = parseInt(env, "DISK_COUNT", 0, 64);
  for (let i = 0; i < diskCount; i++) {
    const p = `DISK_${i}_`;
    out.disks.push({
      index: i,
      path: opt(env[`${p}PATH`]),
      uri: opt(env[`${p}URI`]),
      access: env[`${p}ACCESS`] ?? "rw",
      uuid: opt(env[`${p}UUID`]),
      sizeMiB: env[`${p}SIZE`] && /^\d+$/.test(env[`${p}SIZE`]!) ? Number(env[`${p}SIZE`]) : undefined,
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

  if (script === "create" || script === "rename") {
    if (out.disks.length < 1) throw new SnfError("Ganeti environment: DISK_COUNT is 0: the instance has no disk to deploy onto");
    if (!out.disks[0]!.path) throw new SnfError("Ganeti environment: DISK_0_PATH is missing (userspace-only disks are not supported)");
  }
  if (script === "rename") need(env, "OLD_INSTANCE_NAME");
  if (script === "export" || script === "import") {
    const P = script === "export" ? "EXPORT" : "IMPORT";
    const index = parseInt(env, `${P}_INDEX`, 0, 63);
    const diskPath = opt(env[`${P}_DISK_PATH`]) ?? opt(env[`${P}_DEVICE`]);
    if (!diskPath) throw new SnfError(`Ganeti environment: ${P}_DISK_PATH is missing (URI-only disks are not supported)`);
    const sizeFd = script === "export" && env.EXP_SIZE_FD && /^\d+$/.test(env.EXP_SIZE_FD) ? Number(env.EXP_SIZE_FD) : undefined;
    out.transfer = { index, diskPath, diskUri: opt(env[`${P}_DISK_URI`]), sizeFd };
  }
  return out;
}

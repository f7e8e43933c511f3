/**
 * Everything snf-image leaves for cloud-init in the image, in one place:
 * - drop-ins /etc/cloud/cloud.cfg.d/<prio>_snf-image-<name>.cfg (0644 root,
 *   first line "# Written by snf-image: <why>"): writeCloudCfg;
 * - the NoCloud seed /var/lib/cloud/seed/nocloud-net/* (0600 root, dir 0700):
 *   writeSeedFile (meta-data, user-data by InitializeDatasource;
 *   network-config by net/cloudinit.ts);
 * - per-once scripts /var/lib/cloud/scripts/per-once/snf-image-*.sh.
 * An image "has cloud-init" when it has /etc/cloud.
 */
import { isDirIn, mkdirIn, writeFileIn } from "../lib/safepath.ts";

export const CLOUD_DIR = "/etc/cloud";
export const CLOUD_CFG_D = "/etc/cloud/cloud.cfg.d";
export const SEED_DIR = "/var/lib/cloud/seed/nocloud-net";
export const PER_ONCE_DIR = "/var/lib/cloud/scripts/per-once";

/** The drop-ins snf-image writes, by name, with their priority (later files win in cloud-init). */
const DROP_INS = {
  datasource: 99, // InitializeDatasource: NoCloud only
  network: 99, // ConfigureNetwork: network configured natively
  AddSwap: 98, // AddSwap under CLOUD_INIT: a swap file
  DeleteSSHKeys: 98, // DeleteSSHKeys under CLOUD_INIT: keep the fresh host keys
} as const;
export type DropIn = keyof typeof DROP_INS;

export const hasCloudInit = (root: string): boolean => isDirIn(root, CLOUD_DIR);

/** Throws the one "no cloud-init in the image" error when CLOUD_INIT is set but the image lacks it. */
export function requireCloudInit(root: string): void {
  if (!hasCloudInit(root)) throw new Error("CLOUD_INIT is set but the image has no /etc/cloud (is cloud-init installed?)");
}

/** Guest path of a drop-in. */
export const cloudCfgPath = (name: DropIn): string => `${CLOUD_CFG_D}/${DROP_INS[name]}_snf-image-${name}.cfg`;

/** Write a drop-in; returns its guest path. */
export function writeCloudCfg(root: string, name: DropIn, why: string, body: string): string {
  const file = cloudCfgPath(name);
  mkdirIn(root, CLOUD_CFG_D);
  writeFileIn(root, file, `# Written by snf-image: ${why}\n${body}`, { mode: 0o644, uid: 0, gid: 0 });
  return file;
}

/** Write a file of the NoCloud seed (may hold secrets: 0600 root in a 0700 directory); returns its guest path. */
export function writeSeedFile(root: string, name: "meta-data" | "user-data" | "network-config", data: string | Uint8Array): string {
  mkdirIn(root, SEED_DIR, { mode: 0o700 });
  const file = `${SEED_DIR}/${name}`;
  writeFileIn(root, file, data, { mode: 0o600, uid: 0, gid: 0 });
  return file;
}

/** Write a script cloud-init runs once at first boot (0700 root); returns its guest path. */
export function writePerOnceScript(root: string, name: string, why: string, body: string): string {
  mkdirIn(root, PER_ONCE_DIR);
  const file = `${PER_ONCE_DIR}/snf-image-${name}.sh`;
  writeFileIn(root, file, `#!/bin/sh\n# Written by snf-image: ${why}\n${body}`, { mode: 0o700, uid: 0, gid: 0 });
  return file;
}

/** Keep cloud-init from replacing the network configuration snf-image wrote (no-op without cloud-init). */
export function disableCloudInitNetwork(root: string): string | undefined {
  if (!hasCloudInit(root)) return undefined;
  return writeCloudCfg(root, "network", "the network is configured natively.", "network: {config: disabled}\n");
}

/** Under CLOUD_INIT with SWAP=<n>:<MiB> (no partition carved): ask cloud-init for a swap file. */
export function requestSwapFile(root: string, mib: number): string {
  const bytes = mib * 1024 * 1024;
  return writeCloudCfg(root, "AddSwap", "SWAP property", `swap:\n  filename: /swap.img\n  size: ${bytes}\n  maxsize: ${bytes}\n`);
}

/** Under CLOUD_INIT: keep the host keys DeleteSSHKeys made (cloud-init would delete them and make its own). */
export function keepHostKeys(root: string): string {
  return writeCloudCfg(root, "DeleteSSHKeys", "the host keys are already fresh.", "ssh_deletekeys: false\nssh_genkeytypes: []\n");
}

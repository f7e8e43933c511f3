/**
 * OSFAMILY and ROOT_PARTITION: validate them when the image properties give
 * them, detect them when they don't. Detection mounts candidate partitions
 * READ-ONLY (no journal replay) and looks for /etc/fstab (linux) or
 * Windows/System32 (windows; windows-legacy when NTLDR/boot.ini and no
 * Windows/Panther); BSD partitions are told by their type.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { DiskInfo, OsFamily, Partition, Props } from "../task.ts";
import type { Mounts } from "../lib/mount.ts";
import { isFileIn } from "../lib/safepath.ts";
import { isLegacyLayout } from "./windows.ts";
import { GPT_FREEBSD_UFS, MSDOS_BSD } from "./bsd.ts";

export const OS_FAMILIES: readonly OsFamily[] = ["linux", "windows", "windows-legacy", "freebsd", "openbsd", "netbsd"];

const GPT_MS_BASIC_DATA = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";
const NOT_ROOT_FS = new Set(["swap", "vfat", "iso9660", "LVM2_member", "linux_raid_member", "crypto_LUKS"]);

/** Read-only mount options that also keep the filesystem from replaying its journal. */
export function readOnlyOptions(fsType: string | undefined): string[] {
  switch (fsType) {
    case "ext3":
    case "ext4":
      return ["noload"];
    case "xfs":
      return ["norecovery"];
    case "btrfs":
      return ["nologreplay"];
    default:
      return [];
  }
}

function hasDirCaseInsensitive(dir: string, ...names: string[]): boolean {
  let cur = dir;
  for (const n of names) {
    let entries: string[];
    try {
      entries = fs.readdirSync(cur);
    } catch {
      return false;
    }
    const hit = entries.find((e) => e.toLowerCase() === n.toLowerCase());
    if (!hit) return false;
    cur = path.join(cur, hit);
    try {
      if (fs.lstatSync(cur).isSymbolicLink() || !fs.statSync(cur).isDirectory()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

type Probe = (p: Partition) => Promise<OsFamily | undefined>;

/** Mount-and-look probe: which family does partition p hold, if any. */
export function mountProbe(mounts: Mounts, mountDir: string): Probe {
  return async (p) => {
    // *BSD: told by the partition type, then the filesystem (a slice holds a disklabel, not one filesystem)
    const bsd = MSDOS_BSD[p.type];
    if (bsd) return bsd;
    if (p.type === GPT_FREEBSD_UFS) return !p.fsType || p.fsType === "ufs" ? "freebsd" : undefined;
    if (!p.fsType || NOT_ROOT_FS.has(p.fsType) || p.kind === "extended") return undefined;
    const windows = p.fsType === "ntfs" || p.type === "7" || p.type === GPT_MS_BASIC_DATA;
    fs.mkdirSync(mountDir, { recursive: true });
    try {
      await mounts.mount(p.dev, mountDir, { fsType: p.fsType === "ntfs" ? "ntfs" : p.fsType, readOnly: true, options: readOnlyOptions(p.fsType) });
    } catch {
      return undefined;
    }
    try {
      if (windows && hasDirCaseInsensitive(mountDir, "windows", "system32")) return isLegacyLayout(mountDir) ? "windows-legacy" : "windows";
      if (isFileIn(mountDir, "/etc/fstab")) return "linux";
      return undefined;
    } finally {
      await mounts.umount(mountDir);
    }
  };
}

export interface RootInfo {
  family: OsFamily;
  rootPartition: Partition;
}

/**
 * OSFAMILY and ROOT_PARTITION from the properties, validated against the
 * disk; whatever is missing is detected with `probe` (first match wins).
 */
export async function resolveRoot(props: Props, disk: DiskInfo, probe: Probe): Promise<RootInfo> {
  const famRaw = props.get("OSFAMILY")?.trim().toLowerCase();
  const rpRaw = props.get("ROOT_PARTITION")?.trim();
  let family: OsFamily | undefined;
  if (famRaw) {
    if (!(OS_FAMILIES as readonly string[]).includes(famRaw)) throw new Error(`OSFAMILY ${JSON.stringify(famRaw)} is not one of ${OS_FAMILIES.join(", ")}`);
    family = famRaw as OsFamily;
  }
  if (disk.partitions.length === 0) throw new Error(`no partitions found on ${disk.dev}`);
  let root: Partition | undefined;
  if (rpRaw) {
    if (!/^[1-9]\d{0,2}$/.test(rpRaw)) throw new Error(`ROOT_PARTITION ${JSON.stringify(rpRaw)} is not a partition number`);
    root = disk.partitions.find((p) => p.number === Number(rpRaw));
    if (!root) throw new Error(`ROOT_PARTITION ${rpRaw} does not exist on the disk`);
  }
  if (family && root) return { family, rootPartition: root };
  const candidates = root ? [root] : disk.partitions;
  for (const p of candidates) {
    const f = await probe(p);
    if (f === undefined) continue;
    if (family && f !== family && !(family.startsWith("windows") && f.startsWith("windows"))) continue;
    return { family: family ?? f, rootPartition: p };
  }
  if (root) throw new Error(`cannot tell the OS family of partition ${root.number}; set OSFAMILY`);
  throw new Error(`cannot find the root partition${family ? ` of a ${family} image` : ""}; set ROOT_PARTITION${family ? "" : " and OSFAMILY"}`);
}

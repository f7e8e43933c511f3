/**
 * The image's /etc/fstab: parsing (fields unescaped as the kernel's mount
 * table is, lib/mount.ts), which entries MountImage mounts and in what order,
 * and the swap line AddSwap appends.
 */
import { findBySpec } from "../disk.ts";
import { unescapeMountField } from "../lib/mount.ts";
import { readTextIn, writeFileIn } from "../lib/safepath.ts";
import type { DiskInfo, Partition } from "../task.ts";

export interface FstabEntry {
  spec: string;
  file: string;
  vfstype: string;
  options: string[];
  line: number;
}

export function parseFstab(text: string): FstabEntry[] {
  const out: FstabEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const f = line.split(/\s+/);
    if (f.length < 2) return;
    out.push({ spec: unescapeMountField(f[0]!), file: unescapeMountField(f[1]!), vfstype: f[2] ?? "auto", options: (f[3] ?? "defaults").split(","), line: i + 1 });
  });
  return out;
}

const SKIP_TYPES = new Set([
  "none", "proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "swap", "nfs", "nfs4", "cifs", "smbfs", "sshfs", "fuse.sshfs",
  "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "hugetlbfs", "mqueue", "pstore", "configfs", "efivarfs",
  "binfmt_misc", "autofs", "usbfs", "rpc_pipefs", "nfsd", "iso9660", "udf", "ramfs", "overlay", "9p", "virtiofs", "glusterfs", "ceph",
]);

/** Options worth passing on from fstab (the rest are boot-time policy). */
export function carriedOptions(e: FstabEntry): string[] {
  return e.options.filter((o) => /^(subvol|subvolid)=/.test(o));
}

export interface PlannedMount {
  entry: FstabEntry;
  partition: Partition;
}

/**
 * Which fstab entries to mount, in mount order. Throws naming the entry if
 * one names a device path or a partition that is not on the disk.
 */
export function planFstabMounts(entries: FstabEntry[], disk: DiskInfo, skipped: (e: FstabEntry, why: string) => void = () => {}): PlannedMount[] {
  const out: PlannedMount[] = [];
  for (const e of entries) {
    const mp = e.file;
    if (mp === "/") continue; // the root is already mounted
    if (SKIP_TYPES.has(e.vfstype) || e.spec === "none" || mp === "none" || mp === "swap" || !mp.startsWith("/")) {
      skipped(e, `type ${e.vfstype}`);
      continue;
    }
    if (e.options.includes("bind") || e.options.includes("rbind")) {
      skipped(e, "bind mount");
      continue;
    }
    if (e.options.includes("noauto")) {
      skipped(e, "noauto");
      continue;
    }
    const p = findBySpec(disk, e.spec);
    if (p === null) {
      if (e.spec.startsWith("/dev/")) throw new Error(`fstab entry ${e.spec} for ${mp} is not by UUID or LABEL`);
      skipped(e, `source ${e.spec} is not a local partition`);
      continue;
    }
    if (p === undefined) throw new Error(`fstab entry ${e.spec} for ${mp}: no such partition on the disk`);
    out.push({ entry: e, partition: p });
  }
  const depth = (s: string) => s.split("/").filter(Boolean).length;
  return out.sort((a, b) => depth(a.entry.file) - depth(b.entry.file) || (a.entry.file < b.entry.file ? -1 : a.entry.file > b.entry.file ? 1 : 0));
}

/** The fstab line of a swap area by UUID. */
export function fstabSwapLine(uuid: string): string {
  return `UUID=${uuid} none swap sw 0 0`;
}

/** Append the swap line to the image's /etc/fstab (kept owner/mode; no duplicate). Returns false if it was already there. */
export function addSwapToFstab(root: string, uuid: string): boolean {
  const old = readTextIn(root, "/etc/fstab") ?? "";
  if (parseFstab(old).some((e) => e.spec === `UUID=${uuid}`)) return false;
  const sep = old === "" || old.endsWith("\n") ? "" : "\n";
  writeFileIn(root, "/etc/fstab", `${old}${sep}${fstabSwapLine(uuid)}\n`);
  return true;
}

/**
 * What snf-image knows about FreeBSD, OpenBSD and NetBSD images: where the
 * root filesystem is, rc.conf, hostname files, master.passwd and its
 * first-boot database rebuild, network files and NIC driver names, and how
 * the guest grows its own filesystem.
 */
import * as fs from "node:fs";
import type { NetInterface, NetModel } from "../net/model.ts";
import { netmask4 } from "../net/ip.ts";
import { readTextIn, removeIn, writeFileIn } from "../lib/safepath.ts";
import { setHashIn } from "../lib/passwd.ts";
import type { HashMethod } from "../lib/crypt.ts";
import type { DiskInfo, OsFamily, Partition, TaskContext } from "../task.ts";
import { kernelPartitionAt } from "../disk.ts";
import { FS_BSDFFS, readLabel } from "../lib/disklabel.ts";

export type BsdFamily = "freebsd" | "openbsd" | "netbsd";
export const isBsd = (f: OsFamily): f is BsdFamily => f === "freebsd" || f === "openbsd" || f === "netbsd";

// ---------------------------------------------------------------------------
// partitions: how a BSD root is told (detect.ts) and found (MountImage)

export const GPT_FREEBSD_UFS = "516e7cb6-6ecf-11d6-8ff8-00022d09712b";
/** MBR slice types of the BSDs. */
export const MSDOS_BSD: Readonly<Record<string, BsdFamily>> = { a5: "freebsd", a6: "openbsd", a9: "netbsd" };

/** The device holding a BSD image's root filesystem: GPT freebsd-ufs, or disklabel partition a of the slice. */
export function bsdRootDevice(disk: DiskInfo, rp: Partition, family: BsdFamily): string {
  if (family === "freebsd") {
    if (rp.type !== GPT_FREEBSD_UFS) throw new Error(`FreeBSD images must be GPT with a freebsd-ufs root partition (partition ${rp.number} has type ${rp.type.slice(0, 40)})`);
    return rp.dev;
  }
  const label = readLabel(disk.dev, rp.startSector, family);
  const a = label.partitions[0];
  if (!a || a.fstype !== FS_BSDFFS || a.size === 0) throw new Error(`the disklabel of partition ${rp.number} has no FFS partition a`);
  if (a.offset === rp.startSector && a.size === rp.sizeSectors) return rp.dev;
  const dev = kernelPartitionAt(disk.dev, a.offset, a.size);
  if (!dev) throw new Error(`the kernel shows no device for disklabel partition a (sectors ${a.offset}+${a.size})`);
  return dev;
}

// ---------------------------------------------------------------------------
// UFS superblock: which ufstype= Linux needs

const UFS1_MAGIC = 0x011954;
const UFS2_MAGIC = 0x19540119;
const MAGIC_AT = 1372;

/** "ufs2" or "44bsd" from the superblock magic (UFS2 at 64 KiB, UFS1 at 8 KiB); bounded reads. */
export function ufsTypeOf(dev: string): "ufs2" | "44bsd" | undefined {
  const fd = fs.openSync(dev, "r");
  try {
    const b = Buffer.alloc(4);
    const at = (off: number) => (fs.readSync(fd, b, 0, 4, off + MAGIC_AT) === 4 ? b.readUInt32LE(0) : -1);
    if (at(65536) === UFS2_MAGIC) return "ufs2";
    if (at(8192) === UFS1_MAGIC) return "44bsd";
    if (at(8192) === UFS2_MAGIC) throw new Error(`${dev} has a UFS2 superblock at 8 KiB (as NetBSD's makefs writes it); Linux reads UFS2 only at 64 KiB, where FreeBSD's newfs puts it`);
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// rc.conf (sh variable assignments)

/** Set key="value" in rc.conf text: earlier assignments are commented out, one is appended (pure). */
export function setRcVar(text: string, key: string, value: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`bad rc.conf variable ${key}`);
  if (/["\\$`\n]/.test(value)) throw new Error(`bad rc.conf value for ${key}`);
  const re = new RegExp(`^(\\s*)(${key}=)`);
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  const out = lines.map((l) => (re.test(l) ? `#${l} # replaced by snf-image` : l));
  out.push(`${key}="${value}"`);
  return `${out.join("\n")}\n`;
}

/** The value of key in rc.conf text (last plain assignment), unquoted (pure). */
export function getRcVar(text: string, key: string): string | undefined {
  let v: string | undefined;
  for (const l of text.split("\n")) {
    const m = new RegExp(`^\\s*${key}=(?:"([^"]*)"|'([^']*)'|(\\S*))`).exec(l);
    if (m) v = m[1] ?? m[2] ?? m[3];
  }
  return v;
}

export function editRcConf(root: string, vars: Array<[string, string]>): void {
  let t = readTextIn(root, "/etc/rc.conf") ?? "";
  for (const [k, v] of vars) t = setRcVar(t, k, v);
  writeFileIn(root, "/etc/rc.conf", t); // owner/mode kept; a new file is 0644 root
}

// ---------------------------------------------------------------------------
// hostname

/** Write the hostname where the family keeps it; returns the guest paths written. */
export function writeBsdHostname(root: string, family: BsdFamily, name: string): string[] {
  const out: string[] = [];
  if (family === "openbsd" || family === "netbsd") {
    writeFileIn(root, "/etc/myname", `${name}\n`);
    out.push("/etc/myname");
  }
  if (family === "freebsd" || family === "netbsd") {
    editRcConf(root, [["hostname", name]]);
    out.push("/etc/rc.conf");
  }
  return out;
}

// ---------------------------------------------------------------------------
// passwords

/** The original's default hash per family (passlib names → ours). */
export const DEFAULT_HASH: Record<BsdFamily, HashMethod> = { freebsd: "sha512", openbsd: "blowfish", netbsd: "sha1" };

/** Replace user's hash in master.passwd text and set change=0; other fields kept (pure). */
export function setMasterPasswdHash(text: string, user: string, hash: string): string {
  return setHashIn(text, user, hash, { file: "/etc/master.passwd", fields: 10, exact: true, set: { 5: "0" } });
}

export const RC_LOCAL_SAVED = "/etc/rc.local.snf-image";
const RC_LOCAL_MARK = "# snf-image: first-boot password database rebuild";

/** rc.local shim: rebuild pwd.db/spwd.db once, put the image's rc.local back, run it. */
export function rcLocalShim(hadRcLocal: boolean): string {
  return [
    "#!/bin/sh",
    RC_LOCAL_MARK,
    "/usr/sbin/pwd_mkdb -p /etc/master.passwd",
    hadRcLocal ? `mv -f ${RC_LOCAL_SAVED} /etc/rc.local && . /etc/rc.local` : "rm -f /etc/rc.local",
    "",
  ].join("\n");
}

/**
 * The databases libc reads are regenerated in the guest (its own pwd_mkdb):
 * drop the stale ones and install the rc.local shim, once.
 */
export function scheduleDbRebuild(root: string): string[] {
  const removed = ["/etc/spwd.db", "/etc/pwd.db"].filter((p) => removeIn(root, p));
  const cur = readTextIn(root, "/etc/rc.local");
  if (cur === undefined || !cur.includes(RC_LOCAL_MARK)) {
    if (cur !== undefined) writeFileIn(root, RC_LOCAL_SAVED, cur, { mode: 0o644, uid: 0, gid: 0 });
    writeFileIn(root, "/etc/rc.local", rcLocalShim(cur !== undefined), { mode: 0o644, uid: 0, gid: 0 });
  }
  return removed;
}

// ---------------------------------------------------------------------------
// network

/** Ganeti NIC model (nic_type / NIC_n_FRONTEND_TYPE) → BSD driver name. Unset = paravirtual. */
const DRIVERS: Record<BsdFamily, Record<string, string>> = {
  freebsd: { paravirtual: "vtnet", e1000: "em", rtl8139: "re", i82551: "fxp", i82557b: "fxp", i82559er: "fxp", pcnet: "le", ne2k_pci: "ed", ne2k_isa: "ed" },
  openbsd: { paravirtual: "vio", e1000: "em", rtl8139: "re", i82551: "fxp", i82557b: "fxp", i82559er: "fxp", pcnet: "pcn", ne2k_pci: "ne", ne2k_isa: "ne" },
  netbsd: { paravirtual: "vioif", e1000: "wm", rtl8139: "re", i82551: "fxp", i82557b: "fxp", i82559er: "fxp", pcnet: "pcn", ne2k_pci: "ne", ne2k_isa: "ne" },
};

/** Interface names in NIC order: each driver counts its own units (vtnet0, em0, vtnet1…). */
export function bsdInterfaceNames(family: BsdFamily, models: Array<string | undefined>): string[] {
  const count = new Map<string, number>();
  return models.map((m, i) => {
    const model = (m ?? "").trim().toLowerCase() || "paravirtual";
    const drv = DRIVERS[family][model];
    if (!drv) throw new Error(`NIC ${i}: model ${JSON.stringify(model.slice(0, 32))} has no ${family} driver (known: ${Object.keys(DRIVERS[family]).join(", ")})`);
    const n = count.get(drv) ?? 0;
    count.set(drv, n + 1);
    return `${drv}${n}`;
  });
}

export interface BsdNetFiles {
  /** guest path → full content */
  files: Map<string, string>;
  rcVars: Array<[string, string]>;
  notes: string[];
}

/** The files and rc.conf settings for the NICs (pure). */
export function renderBsdNetwork(family: BsdFamily, ifs: Array<{ name: string; cfg: NetInterface }>): BsdNetFiles {
  const files = new Map<string, string>();
  const rcVars: Array<[string, string]> = [];
  const notes: string[] = [];
  let gateway: string | undefined;
  let ipv6 = false;
  for (const { name, cfg } of ifs) {
    const v4 = cfg.ipv4;
    const v6 = cfg.ipv6;
    if (v4?.method === "static" && v4.gateway && !gateway) gateway = v4.gateway;
    if (v6) ipv6 = true;
    if (v6?.method === "dhcp") notes.push(`${name}: stateful DHCPv6 is not in the ${family} base system; using router advertisements`);
    if (family === "freebsd") {
      if (v4) rcVars.push([`ifconfig_${name}`, v4.method === "dhcp" ? "DHCP" : `inet ${v4.address}/${v4.prefix}`]);
      if (v6) rcVars.push([`ifconfig_${name}_ipv6`, "inet6 accept_rtadv"]);
    } else if (family === "openbsd") {
      const lines: string[] = [];
      if (v4) lines.push(v4.method === "dhcp" ? "dhcp" : `inet ${v4.address} ${netmask4(v4.prefix)}`);
      if (v6) lines.push("inet6 autoconf");
      files.set(`/etc/hostname.${name}`, `${lines.join("\n")}\n`);
    } else {
      const lines: string[] = ["up"];
      if (v4) lines.push(v4.method === "dhcp" ? "!dhcpcd -q -b $int" : `inet ${v4.address} netmask ${netmask4(v4.prefix)}`);
      files.set(`/etc/ifconfig.${name}`, `${lines.join("\n")}\n`);
    }
  }
  if (gateway) {
    if (family === "freebsd") rcVars.push(["defaultrouter", gateway]);
    else if (family === "openbsd") files.set("/etc/mygate", `${gateway}\n`);
    else rcVars.push(["defaultroute", gateway]);
  }
  if (ipv6) {
    if (family === "freebsd") rcVars.push(["rtsold_enable", "YES"]);
    if (family === "netbsd") rcVars.push(["ip6mode", "autohost"]);
  }
  return { files, rcVars, notes };
}

// ---------------------------------------------------------------------------
// filesystem growth (no Debian tool grows UFS: the guest does it)

/** rc.conf switch that makes the guest grow its root filesystem at boot; undefined: none. */
export const GROWFS_RC_VAR: Record<BsdFamily, string | undefined> = { freebsd: "growfs_enable", openbsd: undefined, netbsd: "resize_root" };

/** ConfigureNetwork for *BSD: interface names from the NIC models, then rc.conf / hostname.if / ifconfig.if. */
export function configureBsdNetwork(ctx: TaskContext, family: BsdFamily, model: NetModel): void {
  const byIndex = new Map(ctx.params.nics.map((n) => [n.index, n]));
  const names = bsdInterfaceNames(family, model.interfaces.map((i) => byIndex.get(i.index)?.frontendType));
  const ifs = model.interfaces.map((cfg, k) => ({ name: names[k]!, cfg })).filter((x) => x.cfg.ipv4 || x.cfg.ipv6);
  const out = renderBsdNetwork(family, ifs);
  for (const n of out.notes) ctx.warn(n);
  const written: string[] = [];
  for (const [p, text] of out.files) {
    writeFileIn(ctx.root, p, text, { mode: family === "openbsd" ? 0o640 : 0o644, uid: 0, gid: 0 });
    written.push(p);
  }
  if (out.rcVars.length) {
    editRcConf(ctx.root, out.rcVars);
    written.push(`/etc/rc.conf (${out.rcVars.map(([k]) => k).join(", ")})`);
  }
  ctx.info(`${family}: ${ifs.map((x) => x.name).join(", ")}; wrote ${written.join(", ")}`);
}

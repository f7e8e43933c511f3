/**
 * Synthetic *BSD disk images for tests (no BSD installer runs here), and an
 * independent way to read them back (sleuthkit, not the helper's code).
 *
 *  freebsd: GPT, freebsd-boot + freebsd-ufs root (last).
 *  openbsd: MBR slice a6 at sector 64, disklabel: a = FFS (from the slice start), b = swap (last), c = disk.
 *  netbsd:  MBR slice a9 at sector 2048, disklabel: b = swap, a = FFS (last), c = slice, d = disk.
 *
 * Filesystems are FFS made by Debian's makefs. They are UFS1: Debian's makefs
 * (NetBSD's) writes the UFS2 superblock at 8 KiB, where Linux never looks
 * (it reads UFS2 at 64 KiB, where FreeBSD's newfs puts it).
 *
 * The disklabel is written here from the documented on-disk layout
 * (sys/disklabel.h), independently of helper/lib/disklabel.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, openSync, writeSync, closeSync, readFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export type Bsd = "freebsd" | "openbsd" | "netbsd";
export const SECTOR = 512;
export const IMAGE_MIB = 64;

function run(cmd: string[], input?: string): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: input === undefined ? "ignore" : Buffer.from(input) });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

export interface BsdImage {
  path: string;
  family: Bsd;
  /** sector where the filesystem (root, partition a) starts */
  fsStart: number;
  /** MBR slice (open/netbsd) start and size in sectors */
  slice?: { start: number; size: number };
  rootPartition: number;
}

const MASTER_PASSWD = [
  "root:$1$old$oldoldoldoldoldoldold.:0:0::0:0:Charlie &:/root:/bin/sh",
  "toor:*:0:0::0:0:Bourne-again Superuser:/root:",
  "daemon:*:1:1::0:0:Owner of many system processes:/root:/usr/sbin/nologin",
  "",
].join("\n");
const PASSWD = "root:*:0:0:Charlie &:/root:/bin/sh\ntoor:*:0:0:Bourne-again Superuser:/root:\ndaemon:*:1:1:Owner of many system processes:/root:/usr/sbin/nologin\n";

function tree(family: Bsd): string {
  const t = mkdtempSync(join(tmpdir(), `snf-${family}-tree-`));
  const put = (p: string, text: string, mode = 0o644) => {
    mkdirSync(dirname(join(t, p)), { recursive: true });
    writeFileSync(join(t, p), text);
    chmodSync(join(t, p), mode);
  };
  put("/etc/master.passwd", MASTER_PASSWD, 0o600);
  put("/etc/passwd", PASSWD);
  put("/etc/group", "wheel:*:0:root\ndaemon:*:1:\n");
  put("/etc/spwd.db", "stale", 0o600);
  put("/etc/pwd.db", "stale");
  put("/etc/ssh/sshd_config", "PermitRootLogin prohibit-password\n");
  for (const k of ["ed25519", "rsa"]) {
    put(`/etc/ssh/ssh_host_${k}_key`, `OLD ${k} PRIVATE\n`, 0o600);
    put(`/etc/ssh/ssh_host_${k}_key.pub`, `OLD ${k} PUBLIC\n`);
  }
  if (family === "freebsd") put("/etc/rc.conf", 'hostname="template"\nsshd_enable="YES"\nifconfig_DEFAULT="DHCP"\n');
  if (family === "netbsd") put("/etc/rc.conf", "rc_configured=YES\nhostname=template\nsshd=YES\n");
  if (family !== "freebsd") put("/etc/myname", "template.example.org\n");
  put("/etc/rc.local", "echo image rc.local\n");
  mkdirSync(join(t, "root"), { mode: 0o700 });
  // trap: /root/.ssh points out of the image
  symlinkSync("../../../../../../../tmp/snf-escape", join(t, "root/.ssh"));
  mkdirSync(join(t, "tmp"), { recursive: true });
  return t;
}

/** FFS (UFS1) filesystem image of `sectors` from a tree, with free inodes and blocks. */
function makeFfs(treeDir: string, out: string, sectors: number): void {
  run(["makefs", "-t", "ffs", "-o", "version=1", "-s", String(sectors * SECTOR), "-f", "512", out, treeDir]);
}

// ---- disklabel (test-side writer/reader) ----
const DISKMAGIC = 0x82564557;
export interface LabelPart { size: number; offset: number; fstype: number }

export function writeDisklabel(disk: string, sliceStart: number, totalSectors: number, parts: LabelPart[], openbsd: boolean): void {
  const b = Buffer.alloc(512);
  b.writeUInt32LE(DISKMAGIC, 0);
  b.writeUInt16LE(5, 4); // DTYPE_SCSI-ish
  b.write(openbsd ? "SCSI disk" : "virtio", 8, "latin1");
  b.writeUInt32LE(512, 40); // secsize
  b.writeUInt32LE(63, 44);
  b.writeUInt32LE(255, 48);
  b.writeUInt32LE(Math.ceil(totalSectors / (63 * 255)), 52);
  b.writeUInt32LE(63 * 255, 56);
  b.writeUInt32LE(totalSectors, 60);
  if (openbsd) {
    b.writeUInt32LE(sliceStart, 80); // d_bstart
    b.writeUInt32LE(totalSectors, 84); // d_bend (template: whole disk, helper fixes to the slice end)
    b.writeUInt16LE(1, 114); // d_version
  } else {
    b.writeUInt16LE(3600, 72); // rpm
    b.writeUInt16LE(1, 74); // interleave
  }
  b.writeUInt32LE(DISKMAGIC, 132);
  b.writeUInt16LE(parts.length, 138);
  b.writeUInt32LE(8192, 140);
  b.writeUInt32LE(65536, 144);
  parts.forEach((p, i) => {
    const at = 148 + 16 * i;
    b.writeUInt32LE(p.size, at);
    b.writeUInt32LE(p.offset, at + 4);
    b[at + 12] = p.fstype;
  });
  let x = 0;
  for (let o = 0; o < 148 + 16 * parts.length; o += 2) x ^= b.readUInt16LE(o);
  b.writeUInt16LE(x, 136);
  const fd = openSync(disk, "r+");
  writeSync(fd, b, 0, 512, (sliceStart + 1) * SECTOR);
  closeSync(fd);
}

/** Read a label back (test side; checks magic and checksum). */
export function readDisklabel(disk: string, sliceStart: number): { secperunit: number; bend: number; parts: LabelPart[] } {
  const fd = openSync(disk, "r");
  const b = Buffer.alloc(512);
  try {
    require("node:fs").readSync(fd, b, 0, 512, (sliceStart + 1) * SECTOR);
  } finally {
    closeSync(fd);
  }
  if (b.readUInt32LE(0) !== DISKMAGIC || b.readUInt32LE(132) !== DISKMAGIC) throw new Error("no disklabel");
  const n = b.readUInt16LE(138);
  let x = 0;
  for (let o = 0; o < 148 + 16 * n; o += 2) x ^= o === 136 ? 0 : b.readUInt16LE(o);
  if (x !== b.readUInt16LE(136)) throw new Error("disklabel checksum mismatch");
  const parts: LabelPart[] = [];
  for (let i = 0; i < n; i++) parts.push({ size: b.readUInt32LE(148 + 16 * i), offset: b.readUInt32LE(152 + 16 * i), fstype: b[160 + 16 * i]! });
  return { secperunit: b.readUInt32LE(60), bend: b.readUInt32LE(84), parts };
}

function dd(src: string, disk: string, atSector: number): void {
  run(["dd", `if=${src}`, `of=${disk}`, "bs=64K", `seek=${atSector * SECTOR}`, "oflag=seek_bytes", "conv=notrunc,sparse", "status=none"]);
}

/** Build a 64 MiB image of `family` at `out`. */
export function buildBsdImage(family: Bsd, out: string): BsdImage {
  const total = (IMAGE_MIB << 20) / SECTOR;
  rmSync(out, { force: true });
  run(["truncate", "-s", `${IMAGE_MIB}M`, out]);
  const t = tree(family);
  const fsImg = `${out}.ffs`;
  try {
    if (family === "freebsd") {
      run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", out], [
        "label: gpt",
        "first-lba: 40",
        "start=40, size=1024, type=83BD6B9D-7F41-11DC-BE0B-001560B84F0F, name=gptboot0",
        "start=2048, type=516E7CB6-6ECF-11D6-8FF8-00022D09712B, name=rootfs0",
        "",
      ].join("\n"));
      const j = JSON.parse(run(["sfdisk", "--json", out])) as { partitiontable: { partitions: { start: number; size: number }[] } };
      const root = j.partitiontable.partitions[1]!;
      makeFfs(t, fsImg, root.size);
      dd(fsImg, out, root.start);
      return { path: out, family, fsStart: root.start, rootPartition: 2 };
    }
    const openbsd = family === "openbsd";
    const start = openbsd ? 64 : 2048;
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", out], ["label: dos", `start=${start}, type=${openbsd ? "a6" : "a9"}, bootable`, ""].join("\n"));
    const size = total - start;
    const swap = 8192; // 4 MiB
    let parts: LabelPart[];
    let fsStart: number;
    let fsSize: number;
    if (openbsd) {
      fsStart = start;
      fsSize = size - swap;
      parts = [
        { offset: fsStart, size: fsSize, fstype: 7 }, // a
        { offset: fsStart + fsSize, size: swap, fstype: 1 }, // b (last)
        { offset: 0, size: total, fstype: 0 }, // c = disk
      ];
    } else {
      fsStart = start + swap;
      fsSize = size - swap;
      parts = [
        { offset: fsStart, size: fsSize, fstype: 7 }, // a (last)
        { offset: start, size: swap, fstype: 1 }, // b
        { offset: start, size, fstype: 0 }, // c = slice
        { offset: 0, size: total, fstype: 0 }, // d = disk
      ];
    }
    makeFfs(t, fsImg, fsSize);
    dd(fsImg, out, fsStart);
    writeDisklabel(out, start, total, parts, openbsd);
    return { path: out, family, fsStart, slice: { start, size }, rootPartition: 1 };
  } finally {
    rmSync(t, { recursive: true, force: true });
    rmSync(fsImg, { force: true });
  }
}

// ---- read back with sleuthkit (independent of the helper and of Linux's ufs driver) ----

export interface FfsReader {
  read(path: string): string;
  exists(path: string): boolean;
  stat(path: string): { mode: number; uid: number; gid: number; type: string };
}

export function ffsReader(disk: string, fsStartSector: number): FfsReader {
  const base = ["-f", "ufs1", "-o", String(fsStartSector)];
  /** Walk the path through live directory entries only (fls marks deleted ones with "*"). */
  const inode = (p: string): string | undefined => {
    let cur: string | undefined;
    for (const name of p.split("/").filter(Boolean)) {
      const r = Bun.spawnSync(["fls", ...base, disk, ...(cur ? [cur] : [])], { stdout: "pipe", stderr: "pipe" });
      if (r.exitCode !== 0) return undefined;
      let next: string | undefined;
      for (const line of r.stdout.toString().split("\n")) {
        const m = /^(\S+)\s+(\*\s+)?(\d+)(?:\([^)]*\))?:\t(.*)$/.exec(line);
        if (m && !m[2] && m[4] === name) next = m[3];
      }
      if (!next) return undefined;
      cur = next;
    }
    return cur;
  };
  return {
    exists: (p) => inode(p) !== undefined,
    read: (p) => {
      const i = inode(p);
      if (!i) throw new Error(`${p}: not found in the FFS image`);
      return run(["icat", ...base, disk, i]);
    },
    stat: (p) => {
      const i = inode(p);
      if (!i) throw new Error(`${p}: not found in the FFS image`);
      const s = run(["istat", ...base, disk, i]);
      const mode = /^mode:\s*(\S+)/m.exec(s)?.[1] ?? "";
      const uid = Number(/^uid \/ gid:\s*(\d+)\s*\/\s*(\d+)/m.exec(s)?.[1]);
      const gid = Number(/^uid \/ gid:\s*(\d+)\s*\/\s*(\d+)/m.exec(s)?.[2]);
      return { mode: modeBits(mode), uid, gid, type: mode.slice(0, 1) };
    },
  };
}

/** "rrw-------" / "-rw-r--r--" style (istat) → permission bits. */
function modeBits(s: string): number {
  const perm = s.slice(-9);
  let m = 0;
  for (let i = 0; i < 9; i++) if (perm[i] !== "-") m |= 1 << (8 - i);
  return m;
}

export const readBytes = (p: string) => readFileSync(p);

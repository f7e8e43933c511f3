/**
 * *BSD knowledge of the helper: the disklabel reader/writer (untrusted input:
 * every malformed label is one line), rc.conf / master.passwd edits, the
 * first-boot pwd_mkdb shim, NIC driver names and network files, hash methods,
 * and MountImage refusing BSD on a helper without UFS write support.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { checksum, growLabel, parseLabel, readLabel, serializeLabel, writeLabel } from "../../helper/lib/disklabel.ts";
import { bsdInterfaceNames, getRcVar, renderBsdNetwork, scheduleDbRebuild, setMasterPasswdHash, setRcVar, ufsTypeOf } from "../../helper/os/bsd.ts";
import { hashPassword, parseHashMethod, verifyPassword } from "../../helper/lib/crypt.ts";
import { mountIsReadOnly } from "../../helper/lib/mount.ts";
import { mountImage } from "../../helper/tasks/MountImage.ts";
import { sourceSeries, ufsBuildPackages } from "../../src/helper-image/ufs.ts";
import { readDisklabel, writeDisklabel, type LabelPart } from "../lib/bsd.ts";
import { fakeCtx, fakeRoot, SHADOW, type FakeRoot } from "./helper-fixtures.ts";
import { changePassword } from "../../helper/tasks/ChangePassword.ts";
import { checkHelperImage } from "../../src/doctor/helper-check.ts";
import { PROTOCOL_VERSION } from "../../src/protocol.ts";

const TOTAL = 262144;
let tmp: string[] = [];
afterEach(() => {
  for (const t of tmp) fs.rmSync(t, { recursive: true, force: true });
  tmp = [];
});
function diskWith(start: number, parts: LabelPart[], openbsd: boolean): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "snf-label-"));
  tmp.push(d);
  const f = path.join(d, "disk");
  fs.writeFileSync(f, "");
  fs.truncateSync(f, 1 << 20);
  writeDisklabel(f, start, 131072, parts, openbsd);
  return f;
}
const OPENBSD: LabelPart[] = [{ offset: 64, size: 100000, fstype: 7 }, { offset: 100064, size: 8192, fstype: 1 }, { offset: 0, size: 131072, fstype: 0 }];
const NETBSD: LabelPart[] = [
  { offset: 10240, size: 120832, fstype: 7 }, { offset: 2048, size: 8192, fstype: 1 }, { offset: 2048, size: 129024, fstype: 0 }, { offset: 0, size: 131072, fstype: 0 },
];

/** The raw label sector of a fresh OpenBSD test disk (slice at 64, label at 65). */
function openbsdLabelSector(): Buffer {
  const disk = diskWith(64, OPENBSD, true);
  const raw = Buffer.alloc(512);
  const fd = fs.openSync(disk, "r");
  fs.readSync(fd, raw, 0, 512, 65 * 512);
  fs.closeSync(fd);
  return raw;
}

describe("BSD disklabel", () => {
  test("OpenBSD: the last partition (b), the disk partition c, d_secperunit and d_bend grow; a stays", () => {
    const disk = diskWith(64, OPENBSD, true);
    const l = readLabel(disk, 64, "openbsd");
    expect(l.partitions.map((p) => p.letter)).toEqual(["a", "b", "c"]);
    const g = growLabel(l, 64, TOTAL - 64, TOTAL);
    expect(g.grown?.letter).toBe("b");
    expect(g.oldSize).toBe(8192);
    writeLabel(disk, 64, g.label);
    const back = readDisklabel(disk, 64); // test-side reader: magic and checksum
    expect(back.secperunit).toBe(TOTAL);
    expect(back.bend).toBe(TOTAL);
    expect(back.parts).toEqual([{ offset: 64, size: 100000, fstype: 7 }, { offset: 100064, size: TOTAL - 100064, fstype: 1 }, { offset: 0, size: TOTAL, fstype: 0 }]);
  });

  test("NetBSD: a (last) grows, c follows the slice, d the disk; growing again is a no-op", () => {
    const disk = diskWith(2048, NETBSD, false);
    const g = growLabel(readLabel(disk, 2048, "netbsd"), 2048, TOTAL - 2048, TOTAL);
    expect(g.grown?.letter).toBe("a");
    writeLabel(disk, 2048, g.label);
    expect(readDisklabel(disk, 2048).parts).toEqual([
      { offset: 10240, size: TOTAL - 10240, fstype: 7 }, { offset: 2048, size: 8192, fstype: 1 }, { offset: 2048, size: TOTAL - 2048, fstype: 0 }, { offset: 0, size: TOTAL, fstype: 0 },
    ]);
    expect(growLabel(readLabel(disk, 2048, "netbsd"), 2048, TOTAL - 2048, TOTAL).grown).toBeUndefined();
  });

  test("serialize(parse(x)) keeps every byte of an unchanged label", () => {
    const raw = openbsdLabelSector();
    expect(serializeLabel(parseLabel(raw, "openbsd")).equals(raw)).toBe(true);
  });

  test("hostile labels fail with one line", () => {
    const good = openbsdLabelSector();
    const bad = (f: (b: Buffer) => void, fixSum = true): string => {
      const b = Buffer.from(good);
      f(b);
      if (fixSum) b.writeUInt16LE(checksum(b, Math.min(b.readUInt16LE(138), 22)), 136);
      try {
        parseLabel(b, "openbsd");
        return "parsed";
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(bad((b) => b.writeUInt32LE(0, 0))).toMatch(/bad magic/);
    expect(bad((b) => b.writeUInt32LE(1, 4), false)).toMatch(/bad checksum/);
    expect(bad((b) => b.writeUInt16LE(17, 138))).toMatch(/bad partition count 17/);
    expect(bad((b) => b.writeUInt16LE(0, 138))).toMatch(/bad partition count 0/);
    expect(bad((b) => b.writeUInt32LE(4096, 40))).toMatch(/sector size 4096/);
    expect(() => parseLabel(good.subarray(0, 100), "openbsd")).toThrow(/short read/);
    expect(bad(() => {})).toBe("parsed");
    // a partition outside the slice is refused when growing
    const l = parseLabel(good, "openbsd");
    l.partitions[0]!.offset = 10;
    expect(() => growLabel(l, 64, TOTAL - 64, TOTAL)).toThrow(/partition a lies outside the slice/);
  });
});

describe("BSD files", () => {
  test("rc.conf: old assignments commented out, one appended; hostile values refused", () => {
    const t = setRcVar('hostname="old"\nsshd_enable="YES"\n  hostname=older\n', "hostname", "new.example.org");
    expect(t).toBe('#hostname="old" # replaced by snf-image\nsshd_enable="YES"\n#  hostname=older # replaced by snf-image\nhostname="new.example.org"\n');
    expect(getRcVar(t, "hostname")).toBe("new.example.org");
    expect(getRcVar(t, "sshd_enable")).toBe("YES");
    expect(setRcVar("", "growfs_enable", "YES")).toBe('growfs_enable="YES"\n');
    expect(() => setRcVar("", "hostname", 'x"; rm -rf /')).toThrow(/bad rc.conf value/);
    expect(() => setRcVar("", "host name", "x")).toThrow(/bad rc.conf variable/);
  });

  test("master.passwd: only the hash and the change field of the user change", () => {
    const text = "# comment\nroot:*:0:0::1234:0:Charlie &:/root:/bin/csh\ntoor:*:0:0::0:0:Bourne:/root:\n";
    expect(setMasterPasswdHash(text, "root", "$6$s$h")).toBe("# comment\nroot:$6$s$h:0:0::0:0:Charlie &:/root:/bin/csh\ntoor:*:0:0::0:0:Bourne:/root:\n");
    expect(() => setMasterPasswdHash(text, "ghost", "$6$s$h")).toThrow("user ghost has no entry in the image's /etc/master.passwd");
    expect(() => setMasterPasswdHash(text, "root", "a:b")).toThrow(/contains ':'/);
  });

  let fr: FakeRoot | undefined;
  afterEach(() => fr?.cleanup());
  test("pwd_mkdb shim: databases dropped, rc.local saved once, shim installed once", () => {
    fr = fakeRoot({ "/etc/rc.local": "echo mine\n", "/etc/spwd.db": "x", "/etc/pwd.db": "x" });
    expect(scheduleDbRebuild(fr.root)).toEqual(["/etc/spwd.db", "/etc/pwd.db"]);
    expect(scheduleDbRebuild(fr.root)).toEqual([]);
    expect(fr.read("/etc/rc.local.snf-image")).toBe("echo mine\n");
    const shim = fr.read("/etc/rc.local");
    expect(shim).toContain("/usr/sbin/pwd_mkdb -p /etc/master.passwd");
    expect(shim).toContain("mv -f /etc/rc.local.snf-image /etc/rc.local && . /etc/rc.local");
  });

  test("NIC model → driver, units counted per driver", () => {
    expect(bsdInterfaceNames("freebsd", [undefined, "e1000", "paravirtual", "rtl8139"])).toEqual(["vtnet0", "em0", "vtnet1", "re0"]);
    expect(bsdInterfaceNames("openbsd", ["paravirtual", "pcnet"])).toEqual(["vio0", "pcn0"]);
    expect(bsdInterfaceNames("netbsd", ["paravirtual", "e1000", "i82551"])).toEqual(["vioif0", "wm0", "fxp0"]);
    expect(() => bsdInterfaceNames("netbsd", ["virtio-net-pci\nX"])).toThrow(/NIC 0: model "virtio-net-pci\\nx" has no netbsd driver/);
  });

  test("network files per family (static + DHCP + IPv6)", () => {
    const ifs = [
      { name: "X0", cfg: { index: 0, mac: "aa:00:00:00:00:01", name: "eth0", ipv4: { method: "static" as const, address: "192.0.2.5", prefix: 24, gateway: "192.0.2.1" }, ipv6: { method: "slaac" as const } } },
      { name: "X1", cfg: { index: 1, mac: "aa:00:00:00:00:02", name: "eth1", ipv4: { method: "dhcp" as const } } },
    ];
    const f = renderBsdNetwork("freebsd", ifs);
    expect(f.rcVars).toEqual([["ifconfig_X0", "inet 192.0.2.5/24"], ["ifconfig_X0_ipv6", "inet6 accept_rtadv"], ["ifconfig_X1", "DHCP"], ["defaultrouter", "192.0.2.1"], ["rtsold_enable", "YES"]]);
    const o = renderBsdNetwork("openbsd", ifs);
    expect([...o.files]).toEqual([["/etc/hostname.X0", "inet 192.0.2.5 255.255.255.0\ninet6 autoconf\n"], ["/etc/hostname.X1", "dhcp\n"], ["/etc/mygate", "192.0.2.1\n"]]);
    const n = renderBsdNetwork("netbsd", ifs);
    expect([...n.files]).toEqual([["/etc/ifconfig.X0", "up\ninet 192.0.2.5 netmask 255.255.255.0\n"], ["/etc/ifconfig.X1", "up\n!dhcpcd -q -b $int\n"]]);
    expect(n.rcVars).toEqual([["defaultroute", "192.0.2.1"], ["ip6mode", "autohost"]]);
  });

  test("hash methods: per-family defaults and NetBSD's sha1crypt through libxcrypt", async () => {
    expect(parseHashMethod(undefined, "blowfish")).toBe("blowfish");
    expect(parseHashMethod("", "sha1")).toBe("sha1");
    expect(parseHashMethod("sha1crypt")).toBe("sha1");
    const h = await hashPassword("s3cret", "sha1");
    expect(h.startsWith("$sha1$")).toBe(true);
    expect(verifyPassword("s3cret", h)).toBe(true);
    expect((await hashPassword("s3cret", "blowfish")).startsWith("$2b$10$")).toBe(true);
  });

  test("UFS superblock: UFS1 at 8 KiB → 44bsd, UFS2 at 64 KiB → ufs2, UFS2 at 8 KiB refused in one line", () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "snf-ufs-"));
    tmp.push(d);
    const f = path.join(d, "fs");
    const make = (at: number, magic: number) => {
      const b = Buffer.alloc(128 << 10);
      b.writeUInt32LE(magic, at + 1372);
      fs.writeFileSync(f, b);
    };
    make(8192, 0x011954);
    expect(ufsTypeOf(f)).toBe("44bsd");
    make(65536, 0x19540119);
    expect(ufsTypeOf(f)).toBe("ufs2");
    make(8192, 0x19540119);
    expect(() => ufsTypeOf(f)).toThrow(/UFS2 superblock at 8 KiB/);
    make(0, 0);
    expect(ufsTypeOf(f)).toBeUndefined();
  });

  test("MountImage on a helper without UFS write support: one line naming the packages", async () => {
    fr = fakeRoot();
    const ctx = fakeCtx(fr, {}, { family: "freebsd" });
    await expect(mountImage(ctx)).rejects.toThrow(/^this helper has no UFS write support: install linux-source-\S+ linux-headers-\S+ make gcc on the node and rebuild the helper/);
  });

  test("UFS module build packages follow the kernel version", () => {
    expect(sourceSeries("6.1.0-57-amd64")).toBe("6.1");
    expect(sourceSeries("garbage")).toBeNull();
    expect(ufsBuildPackages("6.12.3-1-amd64")).toEqual(["linux-source-6.12", "linux-headers-6.12.3-1-amd64", "make", "gcc"]);
  });
});

test("read-only detection looks at the superblock options too (Linux makes an unclean UFS read-only there)", () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "snf-mi-"));
  const f = path.join(d, "mountinfo");
  fs.writeFileSync(f, [
    "36 25 254:5 / /mnt/image rw,relatime shared:1 - ufs /dev/vda5 ro,ufstype=44bsd",
    "37 25 254:2 / /mnt/other rw,relatime - ufs /dev/vda2 rw,ufstype=ufs2",
    "38 25 254:3 / /mnt/third ro,relatime - ext4 /dev/vda3 rw",
    "",
  ].join("\n"));
  expect(mountIsReadOnly("/mnt/image", f)).toBe(true);
  expect(mountIsReadOnly("/mnt/other", f)).toBe(false);
  expect(mountIsReadOnly("/mnt/third", f)).toBe(true);
  expect(mountIsReadOnly("/mnt/none", f)).toBeUndefined();
  fs.rmSync(d, { recursive: true, force: true });
});

test("ChangePassword on OpenBSD: bcrypt by default, a given hash verbatim; master.passwd only", async () => {
  const MP = "root:*:0:0:daemon:0:0:Charlie &:/root:/bin/ksh\nuser:*:1000:1000::0:0:User:/home/user:/bin/ksh\n";
  for (const given of [undefined, "$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"]) {
    const fr = fakeRoot({ "/etc/master.passwd": MP });
    try {
      const ctx = fakeCtx(fr, given ? { passwordHash: given } : { password: "pw" }, { family: "openbsd" });
      await changePassword(ctx);
      const root = fr.read("/etc/master.passwd").split("\n")[0]!.split(":");
      if (given) expect(root[1]).toBe(given);
      else expect(root[1]!.startsWith("$2b$10$") && verifyPassword("pw", root[1]!)).toBe(true);
      expect(root.slice(2).join(":")).toBe("0:0:daemon:0:0:Charlie &:/root:/bin/ksh");
      expect(fr.read("/etc/shadow")).toBe(SHADOW); // the Linux file is not touched
      expect(fr.read("/etc/rc.local")).toContain("pwd_mkdb");
    } finally {
      fr.cleanup();
    }
  }
});

test("doctor: a helper image without UFS write support is a warning that names the packages", () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "snf-doc-"));
  try {
    for (const f of ["vmlinux", "initrd.cpio", "tools.img"]) fs.writeFileSync(path.join(d, f), "x");
    const m = { protocol: PROTOCOL_VERSION, version: "0.1.0", kernel: "6.1.0-57-amd64", built: "2026-11-29T00:00:00Z", files: { kernel: "vmlinux", initrd: "initrd.cpio", tools: "tools.img" } };
    fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify(m));
    const without = checkHelperImage(d).outcome;
    expect(without.status).toBe("warn");
    expect(without.finding).toContain("no UFS write support, so FreeBSD/OpenBSD/NetBSD images will fail");
    expect(without.fix).toBe("install linux-source-6.1 linux-headers-6.1.0-57-amd64 make gcc and rebuild the helper (snf-image helper build)");
    fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify({ ...m, ufsWrite: "6.1.192-3" }));
    const withUfs = checkHelperImage(d).outcome;
    expect(withUfs.status).toBe("ok");
    expect(withUfs.finding).toContain("UFS write from linux-source 6.1.192-3");
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

/**
 * FreeBSD, OpenBSD and NetBSD images through `create` (real helper VM, the
 * helper's own UFS-write module): synthetic 64 MiB images (test/lib/bsd.ts)
 * onto 128 MiB disks, then everything is read back from outside with
 * sleuthkit and a test-side disklabel reader: the partition / disklabel
 * grew, hostname, master.passwd hash (per-OS method, verified against the
 * password), first-boot pwd_mkdb shim, old host keys gone, authorized keys,
 * network files naming the NIC's driver, the personality file, growfs at
 * boot.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, runCreate } from "../lib/deploy.ts";
import { type Bsd, type BsdImage, buildBsdImage, ffsReader, readDisklabel } from "../lib/bsd.ts";
import { verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Bsd-Pa55word";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsdTestKeyBsdTestKeyBsdTestKeyBsdTestKey00 test@bsd";
const DISK_MIB = 128;
const TOTAL = (DISK_MIB << 20) / 512;
const b64 = (s: string) => Buffer.from(s).toString("base64");
const personality = JSON.stringify([{ path: "/etc/motd", contents: b64("welcome to bsd\n"), owner: "root", group: "wheel", mode: 0o644 }]);

let work: string;
const images = {} as Record<Bsd, BsdImage>;

beforeAll(() => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-bsd-test-"));
  mkdirSync(join(work, "images"));
  for (const f of ["freebsd", "openbsd", "netbsd"] as const) images[f] = buildBsdImage(f, join(work, "images", f));
  // the same OpenBSD image with its FFS marked active (not cleanly unmounted): fs_clean (int8 at 209) = 0
  const dirty = buildBsdImage("openbsd", join(work, "images", "openbsd-dirty"));
  const fd = openSync(dirty.path, "r+");
  writeSync(fd, Buffer.from([0]), 0, 1, dirty.fsStart * 512 + 8192 + 209);
  closeSync(fd);
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function deploy(family: Bsd, nicType?: string, image: string = family, props: Record<string, string> = {}) {
  const disk = join(work, `${family}-disk`);
  rmSync(disk, { force: true });
  Bun.spawnSync(["truncate", "-s", `${DISK_MIB}M`, disk]);
  const r = await runCreate({
    disks: [disk],
    instance: `${family}1.example.org`,
    imageDir: join(work, "images"),
    nics: [{ mac: "aa:00:00:11:22:33", ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1" } }],
    extraEnv: nicType ? { NIC_0_FRONTEND_TYPE: nicType } : {},
    osp: { img_id: image, img_format: "diskdump", img_passwd: PASSWORD, auth_keys: KEY, img_personality: personality, inst_properties: JSON.stringify(props) },
  });
  console.log(r.output.split("\n").filter((l) => !l.startsWith("[MONITOR]")).join("\n"));
  return { r, disk };
}

function sfdisk(disk: string) {
  return (JSON.parse(Bun.spawnSync(["sfdisk", "--json", disk], { stdout: "pipe" }).stdout.toString()) as {
    partitiontable: { lastlba?: number; partitions: { start: number; size: number; type: string }[] };
  }).partitiontable;
}

/** The grown MBR slice and its disklabel (read with the test-side reader). */
function grownSlice(disk: string, type: string) {
  const slice = sfdisk(disk).partitions[0]!;
  expect(slice.type).toBe(type);
  expect(slice.start + slice.size).toBe(TOTAL);
  const label = readDisklabel(disk, slice.start);
  expect(label.secperunit).toBe(TOTAL);
  return label;
}

function masterPasswdRoot(text: string): string[] {
  const line = text.split("\n").find((l) => l.startsWith("root:"))!;
  return line.split(":");
}

/** What every BSD deployment must show. */
function commonChecks(family: Bsd, disk: string, hashPrefix: string) {
  // Linux unmounted the filesystem cleanly: fs_clean (int8 at 209 of the UFS1 superblock) is FS_CLEAN
  const fd = openSync(disk, "r");
  const clean = Buffer.alloc(1);
  readSync(fd, clean, 0, 1, images[family].fsStart * 512 + 8192 + 209);
  closeSync(fd);
  expect(clean[0]).toBe(1);
  const fs = ffsReader(disk, images[family].fsStart);
  const root = masterPasswdRoot(fs.read("/etc/master.passwd"));
  expect(root[1]!.startsWith(hashPrefix)).toBe(true);
  expect(verifyCrypt(PASSWORD, root[1]!)).toBe(true);
  expect(verifyCrypt("wrong", root[1]!)).toBe(false);
  expect(root[5]).toBe("0");
  expect(root.slice(7).join(":")).toBe("Charlie &:/root:/bin/sh");
  expect(fs.read("/etc/master.passwd")).toContain("toor:*:0:0::0:0:Bourne-again Superuser:/root:");
  expect(fs.stat("/etc/master.passwd").mode).toBe(0o600);
  // stale databases dropped; the guest's pwd_mkdb rebuilds them at first boot, then the image's rc.local is back
  expect(fs.exists("/etc/spwd.db")).toBe(false);
  expect(fs.exists("/etc/pwd.db")).toBe(false);
  expect(fs.read("/etc/rc.local")).toContain("/usr/sbin/pwd_mkdb -p /etc/master.passwd");
  expect(fs.read("/etc/rc.local.snf-image")).toBe("echo image rc.local\n");
  // old host keys gone (the guest's rc makes new ones)
  for (const k of ["ed25519", "rsa"]) {
    expect(fs.exists(`/etc/ssh/ssh_host_${k}_key`)).toBe(false);
    expect(fs.exists(`/etc/ssh/ssh_host_${k}_key.pub`)).toBe(false);
  }
  // /root/.ssh is a symlink out of the image: followed inside the image only
  expect(fs.stat("/root/.ssh").type).toBe("l");
  expect(fs.read("/tmp/snf-escape/authorized_keys")).toBe(`${KEY}\n`);
  expect(fs.stat("/tmp/snf-escape/authorized_keys")).toMatchObject({ mode: 0o600, uid: 0, gid: 0 });
  expect(fs.read("/etc/motd")).toBe("welcome to bsd\n");
  expect(fs.stat("/etc/motd")).toMatchObject({ mode: 0o644, uid: 0, gid: 0 });
  return fs;
}

describe("*BSD images through create", () => {
  test("FreeBSD (GPT, freebsd-ufs): partition grown, growfs at first boot, rc.conf, sha512 in master.passwd", async () => {
    const custom = 'echo "$SNF_IMAGE_OSFAMILY on $SNF_IMAGE_HOSTNAME" > "$SNF_IMAGE_TARGET/etc/custom-task-ran"';
    const { r, disk } = await deploy("freebsd", undefined, "freebsd", { CUSTOM_TASK: b64(custom) });
    expect(r.code).toBe(0);
    expect(r.output).not.toContain(PASSWORD);
    const t = sfdisk(disk);
    const root = t.partitions[1]!;
    expect(root.type).toBe("516E7CB6-6ECF-11D6-8FF8-00022D09712B");
    expect(root.start + root.size - 1).toBe(t.lastlba!);
    expect(t.lastlba!).toBeGreaterThan(TOTAL - 100);
    const fs = commonChecks("freebsd", disk, "$6$");
    const rc = fs.read("/etc/rc.conf");
    expect(rc).toMatch(/^hostname="freebsd1\.example\.org"$/m);
    expect(rc).toMatch(/^#hostname="template"/m);
    expect(rc).toMatch(/^growfs_enable="YES"$/m);
    expect(rc).toMatch(/^ifconfig_vtnet0="inet 192\.0\.2\.10\/24"$/m);
    expect(rc).toMatch(/^defaultrouter="192\.0\.2\.1"$/m);
    expect(rc).toContain('sshd_enable="YES"');
    expect(fs.read("/etc/custom-task-ran")).toBe("freebsd on freebsd1.example.org\n");
  }, 900_000);

  test("OpenBSD (MBR a6 + disklabel): slice and label grown, myname, hostname.vio0 + mygate, bcrypt", async () => {
    const { r, disk } = await deploy("openbsd");
    expect(r.code).toBe(0);
    const l = grownSlice(disk, "a6");
    expect(l.bend).toBe(TOTAL);
    expect(l.parts[0]).toEqual({ offset: 64, size: 122816, fstype: 7 }); // a: unchanged
    expect(l.parts[1]).toEqual({ offset: 122880, size: TOTAL - 122880, fstype: 1 }); // b (last): grown
    expect(l.parts[2]).toEqual({ offset: 0, size: TOTAL, fstype: 0 }); // c: the disk
    expect(r.output).toMatch(/openbsd cannot grow its filesystem at boot/);
    const fs = commonChecks("openbsd", disk, "$2b$");
    expect(fs.read("/etc/myname")).toBe("openbsd1.example.org\n");
    expect(fs.read("/etc/hostname.vio0")).toBe("inet 192.0.2.10 255.255.255.0\n");
    expect(fs.read("/etc/mygate")).toBe("192.0.2.1\n");
  }, 900_000);

  test("NetBSD (MBR a9 + disklabel, e1000 NIC): label a grown, resize_root, ifconfig.wm0, sha1crypt", async () => {
    const { r, disk } = await deploy("netbsd", "e1000");
    expect(r.code).toBe(0);
    const l = grownSlice(disk, "a9");
    expect(l.parts[0]).toEqual({ offset: 10240, size: TOTAL - 10240, fstype: 7 }); // a (last): grown
    expect(l.parts[1]).toEqual({ offset: 2048, size: 8192, fstype: 1 }); // b: unchanged
    expect(l.parts[2]).toEqual({ offset: 2048, size: TOTAL - 2048, fstype: 0 }); // c: the slice
    expect(l.parts[3]).toEqual({ offset: 0, size: TOTAL, fstype: 0 }); // d: the disk
    const fs = commonChecks("netbsd", disk, "$sha1$");
    expect(fs.read("/etc/myname")).toBe("netbsd1.example.org\n");
    const rc = fs.read("/etc/rc.conf");
    expect(rc).toMatch(/^hostname="netbsd1\.example\.org"$/m);
    expect(rc).toMatch(/^resize_root="YES"$/m);
    expect(rc).toMatch(/^defaultroute="192\.0\.2\.1"$/m);
    expect(fs.read("/etc/ifconfig.wm0")).toBe("up\ninet 192.0.2.10 netmask 255.255.255.0\n");
  }, 900_000);

  test("an FFS that was not cleanly unmounted (Linux would mount it read-only): one line, exit 1", async () => {
    const { r } = await deploy("openbsd", undefined, "openbsd-dirty");
    expect(r.code).toBe(1);
    expect(r.lastLine).toMatch(/MountImage: the openbsd root filesystem \(\/dev\/sda\d\) was not cleanly unmounted; Linux will only mount it read-only/);
  }, 900_000);
});

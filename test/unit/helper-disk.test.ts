/** Disk reading (sfdisk/blkid on image files), fstab planning and OS/root detection logic. */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { findBySpec, parseSfdiskJson, readDisk } from "../../helper/disk.ts";
import { run } from "../../helper/lib/exec.ts";
import { mountsUnder, sortDeepestFirst } from "../../helper/lib/mount.ts";
import { parseFstab, planFstabMounts } from "../../helper/os/fstab.ts";
import { resolveRoot } from "../../helper/os/detect.ts";
import { makeProps } from "../../helper/props.ts";
import type { DiskInfo, OsFamily, Partition } from "../../helper/task.ts";

let tmp: string | undefined;
afterEach(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

describe("readDisk on an image file", () => {
  test("msdos table with ext4 + xfs-less partitions: numbers, kinds, fs type, UUID, LABEL, PARTUUID", async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-disk-"));
    const img = path.join(tmp, "d.img");
    fs.closeSync(fs.openSync(img, "w"));
    fs.truncateSync(img, 64 << 20);
    Bun.spawnSync(["sfdisk", "-q", img], { stdin: Buffer.from("label: dos\nlabel-id: 0xdeadbeef\n,20M,83\n,,5\n,10M,83\n") });
    // ext4 in partition 1 (offset 1 MiB), label "rootfs"
    const mk = Bun.spawnSync(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs", "-U", "11111111-2222-3333-4444-555555555555", "-E", "offset=1048576", img, "20M"]);
    expect(mk.exitCode).toBe(0);
    const d = await readDisk(run, img);
    expect(d.table).toBe("msdos");
    expect(d.sizeBytes).toBe(64 << 20);
    expect(d.partitions.map((p) => [p.number, p.kind, p.type])).toEqual([
      [1, "primary", "83"],
      [2, "extended", "5"],
      [5, "logical", "83"],
    ]);
    const p1 = d.partitions[0]!;
    expect([p1.fsType, p1.uuid, p1.label]).toEqual(["ext4", "11111111-2222-3333-4444-555555555555", "rootfs"]);
    expect(findBySpec(d, "UUID=11111111-2222-3333-4444-555555555555")).toBe(p1);
    expect(findBySpec(d, "LABEL=rootfs")).toBe(p1);
    expect(findBySpec(d, "PARTUUID=deadbeef-01")).toBe(p1);
    expect(findBySpec(d, "/dev/disk/by-uuid/11111111-2222-3333-4444-555555555555")).toBe(p1);
    expect(findBySpec(d, "UUID=nope")).toBeUndefined();
    expect(findBySpec(d, "/dev/sda1")).toBeNull();
  });

  test("no partition table → table none", async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-disk-"));
    const img = path.join(tmp, "blank.img");
    fs.closeSync(fs.openSync(img, "w"));
    fs.truncateSync(img, 4 << 20);
    expect((await readDisk(run, img)).table).toBe("none");
  });

  test("gpt: partuuid and partlabel from sfdisk", () => {
    const t = parseSfdiskJson(JSON.stringify({ partitiontable: { label: "gpt", id: "X", sectorsize: 4096, partitions: [{ node: "/dev/vda1", start: 256, size: 100, type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4", uuid: "ABC", name: "root" }] } }));
    expect(t.sectorSize).toBe(4096);
    expect(t.partitions[0]).toMatchObject({ number: 1, type: "0fc63daf-8483-4772-8e79-3d69d8477de4", partUuid: "abc", partLabel: "root" });
  });
});

const part = (n: number, extra: Partial<Partition> = {}): Partition => ({ number: n, dev: `/dev/vda${n}`, startSector: n * 2048, sizeSectors: 2048, type: "83", ...extra });
const disk = (parts: Partition[]): DiskInfo => ({ dev: "/dev/vda", sizeBytes: 1 << 30, sectorSize: 512, table: "msdos", partitions: parts });

describe("fstab planning", () => {
  const d = disk([part(1, { uuid: "root-uuid", fsType: "ext4" }), part(2, { uuid: "boot-uuid", fsType: "ext4" }), part(3, { label: "VAR", fsType: "xfs" }), part(5, { uuid: "efi", fsType: "vfat" })]);

  test("local entries in mount-point order; virtual/swap/bind/noauto skipped", () => {
    const fstab = [
      "# /etc/fstab",
      "UUID=root-uuid / ext4 errors=remount-ro 0 1",
      "LABEL=VAR /var xfs defaults 0 2",
      "UUID=efi /boot/efi vfat umask=0077 0 1",
      "UUID=boot-uuid /boot ext4 defaults 0 2",
      "proc /proc proc defaults 0 0",
      "tmpfs /tmp tmpfs defaults 0 0",
      "UUID=swap-uuid none swap sw 0 0",
      "/srv/a /srv/b none bind 0 0",
      "nas:/export /mnt/nfs nfs defaults 0 0",
      "UUID=boot-uuid /mnt/maybe ext4 noauto 0 0",
      "/dev/sda1 / ext4 defaults 0 1",
      "/dev/fd0 /media/floppy auto rw,user,noauto 0 0",
    ].join("\n");
    const skipped: string[] = [];
    const plan = planFstabMounts(parseFstab(fstab), d, (e) => skipped.push(e.file));
    expect(plan.map((p) => [p.entry.file, p.partition.number])).toEqual([
      ["/boot", 2],
      ["/var", 3],
      ["/boot/efi", 5],
    ]);
    expect(skipped).toEqual(["/proc", "/tmp", "none", "/srv/b", "/mnt/nfs", "/mnt/maybe", "/media/floppy"]);
  });

  test("device-path entries and unknown UUIDs are errors naming the line", () => {
    expect(() => planFstabMounts(parseFstab("/dev/sda2 /boot ext4 defaults 0 2\n"), d)).toThrow("fstab entry /dev/sda2 for /boot is not by UUID or LABEL");
    expect(() => planFstabMounts(parseFstab("UUID=zzz /home ext4 defaults 0 2\n"), d)).toThrow("fstab entry UUID=zzz for /home: no such partition on the disk");
  });

  test("octal escapes in mount points", () => {
    expect(parseFstab("LABEL=VAR /srv/my\\040data xfs defaults 0 0")[0]!.file).toBe("/srv/my data");
  });
});

describe("root detection", () => {
  const probeFrom = (m: Record<number, OsFamily>) => async (p: Partition) => m[p.number];
  test("properties win and are validated", async () => {
    const d = disk([part(1), part(2)]);
    expect(await resolveRoot(makeProps({ OSFAMILY: "linux", ROOT_PARTITION: "2" }), d, probeFrom({}))).toMatchObject({ family: "linux", rootPartition: { number: 2 } });
    await expect(resolveRoot(makeProps({ OSFAMILY: "plan9", ROOT_PARTITION: "1" }), d, probeFrom({}))).rejects.toThrow(/OSFAMILY "plan9"/);
    await expect(resolveRoot(makeProps({ OSFAMILY: "linux", ROOT_PARTITION: "7" }), d, probeFrom({}))).rejects.toThrow("ROOT_PARTITION 7 does not exist on the disk");
    await expect(resolveRoot(makeProps({ ROOT_PARTITION: "x1" }), d, probeFrom({}))).rejects.toThrow(/not a partition number/);
  });

  test("detection: first partition whose probe answers; OSFAMILY filters", async () => {
    const d = disk([part(1), part(2), part(3)]);
    expect(await resolveRoot(makeProps({}), d, probeFrom({ 2: "linux", 3: "windows" }))).toMatchObject({ family: "linux", rootPartition: { number: 2 } });
    expect(await resolveRoot(makeProps({ OSFAMILY: "windows" }), d, probeFrom({ 2: "linux", 3: "windows" }))).toMatchObject({ family: "windows", rootPartition: { number: 3 } });
    expect(await resolveRoot(makeProps({ ROOT_PARTITION: "3" }), d, probeFrom({ 2: "linux", 3: "windows" }))).toMatchObject({ family: "windows" });
    await expect(resolveRoot(makeProps({}), disk([]), probeFrom({}))).rejects.toThrow(/no partitions/);
  });
});

describe("mount bookkeeping", () => {
  test("deepest first; mountinfo parsing with escapes", () => {
    expect(sortDeepestFirst(["/m", "/m/boot", "/m/boot/efi", "/m/var"])).toEqual(["/m/boot/efi", "/m/var", "/m/boot", "/m"]);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-mi-"));
    const mi = path.join(tmp, "mountinfo");
    fs.writeFileSync(mi, ["22 1 8:1 / / rw - ext4 /dev/sda1 rw", "30 22 254:1 / /mnt/image rw - ext4 /dev/vda1 rw", "31 30 254:2 / /mnt/image/my\\040boot rw - ext4 /dev/vda2 rw", "32 22 0:5 / /mnt/imageX rw - tmpfs x rw"].join("\n"));
    expect(mountsUnder("/mnt/image", mi)).toEqual(["/mnt/image/my boot", "/mnt/image"]);
  });
});

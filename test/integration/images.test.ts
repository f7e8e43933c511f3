/**
 * Real debootstrap images (test/lib/images.ts), checked from outside without
 * mounting: sfdisk --json for the label, debugfs/blkid at the partition offset
 * for the contents. Needs root; the first run debootstraps bookworm (~80-100 s),
 * later runs hit the cache in /var/cache/snf-image-test/images (SNF_TEST_CACHE).
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debianImage, recipeKey, syntheticRoot, type ImageRecipe } from "../lib/images.ts";
import { withLoop, withMount } from "../lib/loop.ts";

const BASE: ImageRecipe = { suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true };

function out(argv: string[]): string {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

interface SfdiskPart { node: string; start: number; size: number; type: string; bootable?: boolean }
function partitions(disk: string): { label: string; partitions: SfdiskPart[] } {
  return JSON.parse(out(["sfdisk", "--json", disk])).partitiontable;
}
/** debugfs on the ext4 partition inside the raw disk (unix_io "?offset=" syntax). */
function debugfs(disk: string, startSector: number, req: string): string {
  return out(["debugfs", "-R", req, `${disk}?offset=${startSector * 512}`]);
}
function blkid(disk: string, startSector: number, tag: string): string {
  return out(["blkid", "-p", "-O", String(startSector * 512), "-s", tag, "-o", "value", disk]).trim();
}

test("bookworm msdos ext4 image: label, fstab by UUID, template config, sparse", async () => {
  const t0 = performance.now();
  const img = await debianImage(BASE);
  console.error(`[images.test] bookworm msdos ext4 (bootable): ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  expect(img.recipeKey).toBe(recipeKey(BASE));
  expect(statSync(img.path).size).toBe(2048 * 1024 * 1024);
  expect(statSync(img.path).blocks * 512).toBeLessThan(statSync(img.path).size / 2); // sparse

  const pt = partitions(img.path);
  expect(pt.label).toBe("dos");
  expect(pt.partitions.length).toBe(1);
  expect(img.rootPartition).toBe(1);
  const p1 = pt.partitions[0]!;
  expect(p1.start).toBe(2048);
  expect(p1.type).toBe("83");

  expect(blkid(img.path, p1.start, "TYPE")).toBe("ext4");
  expect(blkid(img.path, p1.start, "UUID")).toBe(img.rootUuid);
  const fstab = debugfs(img.path, p1.start, "cat /etc/fstab");
  expect(fstab).toContain(`UUID=${img.rootUuid} / ext4`);
  expect(debugfs(img.path, p1.start, "cat /etc/hostname").trim()).toBe("template");
  expect(debugfs(img.path, p1.start, "cat /etc/machine-id").trim()).toMatch(/^[0-9a-f]{32}$/);
  const rootShadow = debugfs(img.path, p1.start, "cat /etc/shadow").split("\n").find((l) => l.startsWith("root:"));
  expect(rootShadow?.split(":")[1]).toBe("*"); // locked: no password set
  expect(debugfs(img.path, p1.start, "ls -l /etc/ssh")).toContain("ssh_host_ed25519_key");
  expect(debugfs(img.path, p1.start, "stat /etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service")).toContain("symlink");
  expect(debugfs(img.path, p1.start, "cat /etc/network/interfaces")).toContain("iface eth0 inet dhcp");
  // ownership survives mke2fs -d (sshd privsep dir etc. owned by root, /var/log/journal group)
  expect(debugfs(img.path, p1.start, "stat /etc/shadow")).toMatch(/User:\s+0\s+Group:\s+42\b/);

  expect(img.kernel && existsSync(img.kernel)).toBeTruthy();
  expect(img.initrd && existsSync(img.initrd)).toBeTruthy();
  // x86 boot protocol: "HdrS" at 0x202 of a bzImage
  expect(readFileSync(img.kernel!).subarray(0x202, 0x206).toString("latin1")).toBe("HdrS");
}, 1_200_000);

test("second request hits the cache", async () => {
  const a = await debianImage(BASE);
  const t0 = performance.now();
  const b = await debianImage(BASE);
  const s = (performance.now() - t0) / 1000;
  console.error(`[images.test] cache hit: ${s.toFixed(3)} s`);
  expect(b).toEqual(a);
  expect(s).toBeLessThan(1);
}, 1_200_000);

test("gpt + xfs root + separate ext4 /boot", async () => {
  const t0 = performance.now();
  const img = await debianImage({ ...BASE, label: "gpt", rootFs: "xfs", separateBoot: true });
  console.error(`[images.test] bookworm gpt xfs + /boot: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const pt = partitions(img.path);
  expect(pt.label).toBe("gpt");
  expect(pt.partitions.length).toBe(2);
  const [boot, root] = pt.partitions as [SfdiskPart, SfdiskPart];
  expect(img.bootPartition).toBe(1);
  expect(img.rootPartition).toBe(2);
  expect(blkid(img.path, boot.start, "UUID")).toBe(img.bootUuid!);
  expect(blkid(img.path, root.start, "TYPE")).toBe("xfs");
  expect(blkid(img.path, root.start, "UUID")).toBe(img.rootUuid);
  // /boot lives on partition 1 (ext4): the kernel is there
  expect(debugfs(img.path, boot.start, "ls /")).toContain("vmlinuz-");
  // the xfs root, read through a read-only loop device + mount (test/lib/loop.ts)
  const dev = await withLoop(img.path, async (d) => {
    expect(d.partitions).toEqual([`${d.dev}p1`, `${d.dev}p2`]);
    await withMount(d.partitions[1]!, async (dir) => {
      const fstab = readFileSync(join(dir, "etc/fstab"), "utf8");
      expect(fstab).toContain(`UUID=${img.rootUuid} / xfs`);
      expect(fstab).toContain(`UUID=${img.bootUuid} /boot ext4`);
      expect(readFileSync(join(dir, "etc/hostname"), "utf8")).toBe("template\n");
      expect(statSync(join(dir, "etc/shadow")).uid).toBe(0);
      expect(statSync(join(dir, "etc/shadow")).gid).toBe(42);
    });
    return d.dev;
  });
  expect(out(["losetup", "-a"])).not.toContain(`${dev}:`);
}, 1_200_000);

test("btrfs root with an extra user, read through loop + mount", async () => {
  const img = await debianImage({ ...BASE, label: "gpt", rootFs: "btrfs", bootable: false, users: ["user"] });
  expect(img.kernel).toBeUndefined();
  const pt = partitions(img.path);
  expect(blkid(img.path, pt.partitions[0]!.start, "TYPE")).toBe("btrfs");
  expect(blkid(img.path, pt.partitions[0]!.start, "UUID")).toBe(img.rootUuid);
  await withLoop(img.path, (d) =>
    withMount(d.partitions[0]!, async (dir) => {
      expect(readFileSync(join(dir, "etc/fstab"), "utf8")).toContain(`UUID=${img.rootUuid} / btrfs`);
      expect(readFileSync(join(dir, "etc/passwd"), "utf8")).toMatch(/^user:x:1000:1000::\/home\/user:\/bin\/bash$/m);
      expect(statSync(join(dir, "home/user")).uid).toBe(1000);
      expect(existsSync(join(dir, "lib/modules"))).toBe(false); // kernel purged: not bootable
    }),
  );
}, 1_200_000);

test("concurrent requests for one new recipe build it once", async () => {
  const r: ImageRecipe = { ...BASE, bootable: false, sizeMiB: 1536 };
  const [a, b] = await Promise.all([debianImage(r), debianImage(r)]);
  expect(a).toEqual(b);
  expect(statSync(a.path).size).toBe(1536 * 1024 * 1024);
}, 1_200_000);

test("recipe keys differ by every recipe field and are stable", () => {
  const keys = new Set([
    recipeKey(BASE),
    recipeKey({ ...BASE, label: "gpt" }),
    recipeKey({ ...BASE, rootFs: "btrfs" }),
    recipeKey({ ...BASE, separateBoot: true }),
    recipeKey({ ...BASE, sizeMiB: 4096 }),
    recipeKey({ ...BASE, bootable: false }),
    recipeKey({ ...BASE, users: ["user"] }),
    recipeKey({ ...BASE, extraPackages: ["less"] }),
    recipeKey({ ...BASE, rootPassword: "x" }),
    recipeKey({ ...BASE, suite: "trixie" }),
  ]);
  expect(keys.size).toBe(10);
  expect(recipeKey({ ...BASE, sizeMiB: 2048 })).toBe(recipeKey(BASE));
});

test("syntheticRoot writes files-only roots of other families", async () => {
  const d = mkdtempSync(join(tmpdir(), "snf-synth-"));
  try {
    for (const kind of ["redhat", "suse", "arch"] as const) {
      const r = join(d, kind);
      await syntheticRoot(kind, r);
      const osr = readFileSync(join(r, "etc/os-release"), "utf8");
      expect(osr).toMatch(kind === "redhat" ? /ID_LIKE="rhel/ : kind === "suse" ? /ID_LIKE="suse/ : /^ID=arch$/m);
      expect(readFileSync(join(r, "etc/shadow"), "utf8")).toMatch(/^root:/);
      expect(existsSync(join(r, "etc/ssh/sshd_config"))).toBe(true);
    }
    expect(existsSync(join(d, "redhat/etc/sysconfig/network-scripts/ifcfg-eth0"))).toBe(true);
    expect(existsSync(join(d, "suse/etc/sysconfig/network/ifcfg-eth0"))).toBe(true);
    expect(existsSync(join(d, "arch/etc/systemd/network/20-wired.network"))).toBe(true);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

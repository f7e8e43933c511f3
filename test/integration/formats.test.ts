/**
 * Image formats through the real `create` (helper VM under TCG):
 *   - extdump: the root filesystem cut out of a Debian image; the host puts
 *     the 1 MiB MBR prefix in front, the helper grows partition and fs.
 *   - ntfsdump: an NTFS filesystem made with mkntfs, with a Windows/System32
 *     tree; prefix type 7, the helper mounts it with ntfs-3g.
 *   - gzip / xz / zstd compressed diskdumps with names that say nothing:
 *     the disk is byte-identical to the uncompressed image.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, placeImage, runCreate, type CreateSpec, type ScriptRun } from "../lib/deploy.ts";
import { debianImage, derivedArtefact, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";
import { withLoop } from "../lib/loop.ts";
import { writeSystemHive } from "../lib/hive.ts";
import { attr, childElements, parseXml, textOf } from "../../helper/lib/xml.ts";

const PASSWORD = "Tr0ub4dor&3-fmt";
const WIN_KEY = "ABCDE-12345-FGHIJ-67890-KLMNO";
const b64 = (s: string) => Buffer.from(s).toString("base64");
const personality = JSON.stringify([{ path: "/root/fmt.txt", contents: b64("format test\n"), mode: 0o600 }]);
const MiB = 1024 * 1024;

let work: string;
let tmp: string;
let imageDir: string;
let debian: DebianImage;

function sh(cmd: string[], stdin?: Uint8Array): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: stdin ?? "ignore" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}
function freshDisk(name: string, size: number): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  sh(["truncate", "-s", String(size), d]);
  return d;
}
function qemuPids(): string[] {
  const p = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}
function leftovers(): string[] {
  return readdirSync(tmp);
}
/** create with this test's private TMPDIR (so leftovers are ours to count). */
async function create(spec: CreateSpec): Promise<ScriptRun> {
  const r = await runCreate({ imageDir, ...spec, extraEnv: { TMPDIR: tmp, ...spec.extraEnv } });
  if (r.code !== 0) console.log(r.output);
  expect(r.output).not.toContain(PASSWORD);
  expect(qemuPids()).toEqual([]);
  expect(leftovers()).toEqual([]);
  return r;
}
/** "copied N bytes in S s" from the log → MB/s. */
function copyRate(r: ScriptRun): { bytes: number; s: number; mbps: number } {
  const m = /copied (\d+) bytes in ([\d.]+) s/.exec(r.output);
  if (!m) return { bytes: 0, s: 0, mbps: 0 };
  const bytes = Number(m[1]);
  const s = Number(m[2]);
  return { bytes, s, mbps: bytes / MiB / Math.max(s, 0.001) };
}
function partitions(disk: string) {
  return (JSON.parse(sh(["sfdisk", "--json", disk])) as {
    partitiontable: { label: string; partitions: { start: number; size: number; type: string; bootable?: boolean }[] };
  }).partitiontable;
}
/** Cached derived artefact: built once into cacheDir()/issue3-<key>/<name>. */
const cached = (name: string, build: (out: string) => void) => derivedArtefact(debian, "issue3", name, build);

beforeAll(async () => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-fmt-"));
  tmp = join(work, "tmp");
  mkdirSync(tmp, { mode: 0o1777 });
  imageDir = join(work, "images");
  mkdirSync(imageDir);
  debian = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("extdump", () => {
  test("the root fs of a Debian image deploys behind the host's MBR prefix and grows to the disk", async () => {
    const p = partitions(debian.path).partitions[debian.rootPartition - 1]!;
    const fsImg = cached("root.extdump", (out) =>
      sh(["dd", `if=${debian.path}`, `of=${out}`, "bs=4M", "iflag=skip_bytes,count_bytes", `skip=${p.start * 512}`, `count=${p.size * 512}`, "conv=sparse", "status=none"]),
    );
    placeImage(fsImg, join(imageDir, "deb-root")); // no extension: img_format says what it is
    const disk = freshDisk("ext-disk", 3 * 1024 * MiB);
    const r = await create({
      disks: [disk],
      instance: "ext1.example.org",
      osp: { img_id: "deb-root", img_format: "extdump", img_passwd: PASSWORD, img_personality: personality },
    });
    expect(r.code).toBe(0);
    console.log(`[formats] extdump: ${(r.ms / 1000).toFixed(1)} s, copy ${JSON.stringify(copyRate(r))}`);

    // The prefix: syslinux boot code, one bootable Linux partition from 2048 grown to the disk end.
    const mbr = readFileSync(disk).subarray(0, 512);
    const code = readFileSync("/usr/lib/syslinux/mbr/mbr.bin").subarray(0, 440);
    expect(Buffer.compare(mbr.subarray(0, 440), code)).toBe(0);
    const t = partitions(disk);
    expect(t.label).toBe("dos");
    expect(t.partitions.length).toBe(1);
    expect(t.partitions[0]).toMatchObject({ start: 2048, type: "83", bootable: true });
    const end = t.partitions[0]!.start + t.partitions[0]!.size;
    expect(end).toBeGreaterThan(p.size + 2048); // grown beyond the image
    expect(end * 512).toBeGreaterThan(3 * 1024 * MiB - MiB); // to the disk end (alignment aside)

    const m = mountDisk(disk, 1);
    try {
      expect(m.read("/etc/hostname").trim()).toBe("ext1.example.org");
      expect(verifyCrypt(PASSWORD, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
      expect(m.read("/root/fmt.txt")).toBe("format test\n");
      expect(m.stat("/root/fmt.txt").mode).toBe(0o600);
      // the filesystem was grown with the partition
      const df = sh(["df", "-B1", "--output=size", m.root]).trim().split("\n")[1]!;
      expect(Number(df)).toBeGreaterThan(p.size * 512 + 512 * MiB);
    } finally {
      m.close();
    }
  }, 600_000);
});

describe("ntfsdump", () => {
  test("an mkntfs filesystem with Windows/System32 gets a type-7 prefix and is mounted by the helper", async () => {
    const ntfs = join(work, "win.ntfs");
    sh(["truncate", "-s", String(256 * MiB), ntfs]);
    sh(["mkntfs", "-F", "-f", "-q", "-L", "snfwin", ntfs]);
    const mnt = join(work, "ntfs-mnt");
    mkdirSync(mnt);
    sh(["ntfs-3g", ntfs, mnt]);
    try {
      mkdirSync(join(mnt, "Windows", "System32"), { recursive: true });
      mkdirSync(join(mnt, "Windows", "SysWOW64"), { recursive: true });
      await Bun.write(join(mnt, "Windows", "System32", "drivers.txt"), "not really\n");
      // a SYSTEM hive for DisableRemoteDesktopConnections
      const hive = join(work, "SYSTEM");
      writeSystemHive(hive, { current: 1, deny: 0 });
      mkdirSync(join(mnt, "Windows", "System32", "config"), { recursive: true });
      await Bun.write(join(mnt, "Windows", "System32", "config", "SYSTEM"), Bun.file(hive));
      // what sysprep /generalize leaves: InstallUnattend checks it
      mkdirSync(join(mnt, "Windows", "Setup", "State"), { recursive: true });
      await Bun.write(join(mnt, "Windows", "Setup", "State", "State.ini"), "[_CLEAN_]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n");
    } finally {
      sh(["umount", mnt]);
    }
    renameSync(ntfs, join(imageDir, "win-image"));
    const disk = freshDisk("ntfs-disk", 512 * MiB);
    // The helper must find the family, grow the partition, mount NTFS
    // read-write, install the answer file (name, product key, password
    // script, first-boot cleanup) and run the custom task.
    const customTask = b64(
      'set -e\nls "$SNF_IMAGE_TARGET/Windows" >/dev/null\necho "family=$SNF_IMAGE_OSFAMILY root=$SNF_IMAGE_ROOT_PARTITION" > "$SNF_IMAGE_TARGET/snf-marker.txt"\necho marked\n',
    );
    const r = await create({
      disks: [disk],
      instance: "win1",
      osp: {
        img_id: "win-image",
        img_format: "ntfsdump",
        img_passwd: PASSWORD,
        img_personality: personality,
        img_properties: JSON.stringify({ CUSTOM_TASK: customTask }),
        os_product_key: WIN_KEY,
      },
    });
    expect(r.code).toBe(0);
    console.log(r.output.split("\n").filter((l) => /task|family|skipped|grew|custom/i.test(l)).join("\n"));
    expect(r.output).toMatch(/OS family windows, root partition 1/);
    for (const t of ["InstallUnattend", "AssignHostname", "ChangePassword", "DisableRemoteDesktopConnections", "EnforcePersonality"]) expect(r.output).toMatch(new RegExp(`task ${t} done in`));
    expect(r.output).not.toContain(WIN_KEY);

    const t = partitions(disk);
    expect(t.partitions[0]).toMatchObject({ start: 2048, type: "7", bootable: true });
    expect((t.partitions[0]!.start + t.partitions[0]!.size) * 512).toBeGreaterThan(512 * MiB - MiB);

    // FilesystemResizeAfterUmount grew NTFS (offline, ntfsresize) to span the grown partition.
    expect(r.output).toMatch(/ntfs on sda1: NTFS grown \d+ → \d+ bytes/);
    const partBytes = t.partitions[0]!.size * 512;
    const info = await withLoop(disk, async (d) => {
      // read-only; --force because ntfsresize leaves the grown volume scheduled for chkdsk
      const p = Bun.spawnSync(["ntfsresize", "--info", "--force", "--no-action", "--no-progress-bar", d.partitions[0]!], { stdout: "pipe", stderr: "pipe", env: { ...process.env, LC_ALL: "C" } });
      expect(p.exitCode).toBe(0);
      return p.stdout.toString();
    });
    const size = (name: string) => Number(new RegExp(`^${name}\\s*:\\s*(\\d+) bytes`, "m").exec(info)?.[1]);
    const cluster = size("Cluster size");
    const volume = size("Current volume size");
    console.log(`[formats] ntfsdump: NTFS ${volume} bytes on a ${partBytes}-byte partition (image 256 MiB)`);
    expect(size("Current device size")).toBe(partBytes);
    expect(volume).toBeLessThanOrEqual(partBytes);
    expect(volume).toBeGreaterThan(partBytes - cluster - 512);

    // The unattend flow's files, read back with ntfs-3g read-only on a loop device.
    await withLoop(disk, async (d) => {
      const ro = join(work, "ntfs-ro");
      mkdirSync(ro, { recursive: true });
      sh(["ntfs-3g", "-o", "ro", d.partitions[0]!, ro]);
      try {
        const doc = parseXml(new Uint8Array(readFileSync(join(ro, "unattend.xml"))));
        const specialize = childElements(doc.root, "settings").find((x) => attr(x, "pass") === "specialize")!;
        const comp = (name: string) => childElements(specialize, "component").find((c) => attr(c, "name") === name && attr(c, "processorArchitecture") === "amd64")!;
        const shell = comp("Microsoft-Windows-Shell-Setup");
        expect(textOf(childElements(shell, "ComputerName")[0]!)).toBe("win1");
        expect(textOf(childElements(shell, "ProductKey")[0]!)).toBe(WIN_KEY);
        const paths = childElements(comp("Microsoft-Windows-Deployment"), "RunSynchronous")
          .flatMap((x) => childElements(x, "RunSynchronousCommand"))
          .flatMap((x) => childElements(x, "Path").map(textOf));
        expect(paths).toContain("C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd");
        const script = readFileSync(join(ro, "Windows/SnfScripts/ChangeAdminPassword.cmd"), "utf8");
        expect(script).toContain(`net user "Administrator" "${PASSWORD}" /ACTIVE:YES /EXPIRES:NEVER\r\n`);
        const sc = readFileSync(join(ro, "Windows/Setup/Scripts/SetupComplete.cmd"), "utf8");
        expect(sc).toContain('del /Q /F "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd"');
        expect(sc).toContain('if exist "C:\\unattend.xml" del /Q /F "C:\\unattend.xml"');
        expect(sc).not.toContain(PASSWORD);
        console.log(`[formats] ntfsdump: unattend.xml ${statSync(join(ro, "unattend.xml")).size} bytes, SetupComplete.cmd ${sc.length} bytes`);
      } finally {
        sh(["umount", ro]);
      }
    });

    const m = mountDisk(disk, 1);
    try {
      expect(m.read("/snf-marker.txt")).toBe("family=windows root=1\n");
      expect(m.read("/Windows/System32/drivers.txt")).toBe("not really\n");
      expect(m.read("/root/fmt.txt")).toBe("format test\n"); // personality on NTFS too
    } finally {
      m.close();
    }
  }, 600_000);
});

describe("ntfsdump, dirty", () => {
  test("an NTFS marked dirty (scheduled for chkdsk) is refused with one line, after the partition grew", async () => {
    const ntfs = join(work, "dirty.ntfs");
    sh(["truncate", "-s", String(128 * MiB), ntfs]);
    sh(["mkntfs", "-F", "-f", "-q", ntfs]);
    const mnt = join(work, "dirty-mnt");
    mkdirSync(mnt, { recursive: true });
    sh(["ntfs-3g", ntfs, mnt]);
    try {
      mkdirSync(join(mnt, "Windows", "System32", "config"), { recursive: true });
      writeSystemHive(join(work, "SYSTEM-dirty"), { current: 1, deny: 0 });
      await Bun.write(join(mnt, "Windows", "System32", "config", "SYSTEM"), Bun.file(join(work, "SYSTEM-dirty")));
    } finally {
      sh(["umount", mnt]);
    }
    // a real ntfsresize leaves the volume scheduled for chkdsk: the "dirty" state
    sh(["truncate", "-s", String(192 * MiB), ntfs]);
    sh(["ntfsresize", "-f", "-P", ntfs]);
    renameSync(ntfs, join(imageDir, "win-dirty"));
    const disk = freshDisk("ntfs-dirty-disk", 512 * MiB);
    const r = await create({ disks: [disk], instance: "win2", osp: { img_id: "win-dirty", img_format: "ntfsdump", img_passwd: PASSWORD } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/FilesystemResizeAfterUmount: ntfs on sda1 is marked dirty \(scheduled for chkdsk\)/);
    expect(r.lastLine).toContain("OFFLINE_NTFSRESIZE_NOCHECK");
  }, 600_000);
});

describe("compressed diskdumps (detected by magic, not name)", () => {
  const tools: [string, string[]][] = [
    ["gzip", ["gzip", "-1", "-c"]],
    ["xz", ["xz", "-0", "-T2", "-c"]],
    ["zstd", ["zstd", "-3", "-T2", "-q", "-c"]],
  ];
  const rates: Record<string, unknown> = {};

  afterAll(() => console.log(`[formats] copy rates: ${JSON.stringify(rates)}`));

  /** The disk equals the image over its length and is zero after it. */
  function assertIdentical(disk: string, image: string, diskBytes: number) {
    const size = statSync(image).size;
    const cmp = Bun.spawnSync(["cmp", "-n", String(size), disk, image], { stdout: "pipe", stderr: "pipe" });
    expect(cmp.stdout.toString() + cmp.stderr.toString()).toBe("");
    expect(cmp.exitCode).toBe(0);
    const tail = Bun.spawnSync(["cmp", "-n", String(diskBytes - size), "-i", `${size}:0`, disk, "/dev/zero"], { stdout: "pipe", stderr: "pipe" });
    expect(tail.exitCode).toBe(0);
  }

  test("uncompressed reference", async () => {
    placeImage(debian.path, join(imageDir, "plain"));
    const disk = freshDisk("ref-disk", 3 * 1024 * MiB);
    sh(["dd", "if=/dev/urandom", `of=${disk}`, "bs=1M", "count=8", "conv=notrunc", "status=none"]); // old data
    const r = await create({
      disks: [disk],
      osp: { img_id: "plain", img_format: "diskdump", img_properties: '{"EXCLUDE_ALL_TASKS":"yes"}' },
    });
    expect(r.code).toBe(0);
    rates.none = copyRate(r);
    assertIdentical(disk, debian.path, 3 * 1024 * MiB);
  }, 600_000);

  test.each(tools)("%s", async (kind, argv) => {
    const packed = cached(`disk.${kind}`, (out) => {
      const p = Bun.spawnSync([...argv, debian.path], { stdout: Bun.file(out), stderr: "pipe" });
      if (p.exitCode !== 0) throw new Error(`${argv[0]}: ${p.stderr.toString()}`);
    });
    const name = `image-${kind === "gzip" ? "a" : kind === "xz" ? "b" : "c"}`;
    placeImage(packed, join(imageDir, name));
    const disk = freshDisk(`${kind}-disk`, 3 * 1024 * MiB);
    sh(["dd", "if=/dev/urandom", `of=${disk}`, "bs=1M", "count=8", "seek=2000", "conv=notrunc", "status=none"]);
    const r = await create({
      disks: [disk],
      osp: { img_id: name, img_format: "diskdump", img_properties: '{"EXCLUDE_ALL_TASKS":"yes"}' },
    });
    expect(r.code).toBe(0);
    expect(r.output).toContain(`image is ${kind}-compressed`);
    rates[kind] = { ...copyRate(r), stored: statSync(packed).size };
    assertIdentical(disk, debian.path, 3 * 1024 * MiB);
  }, 600_000);

  test("a compressed image larger than the disk (size unknown up front) fails with one line", async () => {
    const packed = cached("disk.zstd", (out) => sh(["zstd", "-3", "-T2", "-q", "-f", debian.path, "-o", out]));
    placeImage(packed, join(imageDir, "too-big"));
    const r = await create({ disks: [freshDisk("small-disk", 1024 * MiB)], osp: { img_id: "too-big", img_format: "diskdump" } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/^snf-image create: ERROR: image \(more than 1073741824 bytes\) does not fit disk /);
    expect(r.output).not.toContain("HELPER:");
  }, 600_000);

  test("a compressed extdump (size unknown): the partition ends at the disk end", async () => {
    const p = partitions(debian.path).partitions[debian.rootPartition - 1]!;
    const fsImg = cached("root.extdump", (out) =>
      sh(["dd", `if=${debian.path}`, `of=${out}`, "bs=4M", "iflag=skip_bytes,count_bytes", `skip=${p.start * 512}`, `count=${p.size * 512}`, "conv=sparse", "status=none"]),
    );
    const packed = cached("root.extdump.zstd", (out) => sh(["zstd", "-1", "-T2", "-q", "-f", fsImg, "-o", out]));
    placeImage(packed, join(imageDir, "root-z"));
    const disk = freshDisk("extz-disk", 2560 * MiB);
    const r = await create({
      disks: [disk],
      instance: "extz",
      osp: { img_id: "root-z", img_format: "extdump", img_passwd: PASSWORD },
    });
    expect(r.code).toBe(0);
    expect(r.output).toMatch(/partition 1 already reaches the end/);
    const t = partitions(disk);
    expect(t.partitions[0]).toMatchObject({ start: 2048, type: "83", bootable: true });
    expect((t.partitions[0]!.start + t.partitions[0]!.size) * 512).toBe(2560 * MiB);
    const m = mountDisk(disk, 1);
    try {
      expect(m.read("/etc/hostname").trim()).toBe("extz");
      const df = Number(sh(["df", "-B1", "--output=size", m.root]).trim().split("\n")[1]);
      expect(df).toBeGreaterThan(2300 * MiB); // the helper grew the 2 GiB filesystem
    } finally {
      m.close();
    }
  }, 600_000);

  test("a corrupt gzip stream fails with one line before the helper runs", async () => {
    const packed = cached("disk.gzip", (out) => void Bun.spawnSync(["gzip", "-1", "-c", debian.path], { stdout: Bun.file(out) }));
    const bad = join(imageDir, "broken");
    const head = readFileSync(packed).subarray(0, 4 * MiB);
    head.fill(0x55, 1 * MiB, 1 * MiB + 4096);
    await Bun.write(bad, head);
    const r = await create({ disks: [freshDisk("bad-disk", 3 * 1024 * MiB)], osp: { img_id: "broken", img_format: "diskdump" } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/^snf-image create: ERROR: gzip decompression of the image failed/);
    expect(r.output).not.toContain("HELPER:");
  }, 600_000);
});

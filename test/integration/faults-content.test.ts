/**
 * Hostile content through the real `create`, the way Ganeti calls it (issue 8,
 * "never hang, never lie, never leak"): empty images, a disk that runs out of
 * space, corrupt and booby-trapped XFS / btrfs / NTFS images, text from the
 * image that tries to forge log lines or smuggle control characters, a dirty
 * ext4 journal that must now deploy, and what a previous user left past the
 * image's end (ZERO_DISK_TAIL). Images are small and made here with mkfs;
 * every case that needs the helper VM boots it once.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { HELPER_DIR, leftovers, runCreate, type CreateSpec, type ScriptRun } from "../lib/deploy.ts";
import { MINIMAL_ROOT_FILES } from "../lib/images.ts";
import { mountDisk } from "../lib/inspect.ts";
import { withLoop } from "../lib/loop.ts";
import { writeSystemHive } from "../lib/hive.ts";

const MiB = 1024 * 1024;
const PASSWORD = "Leak-Me-N0t-42";
const MARKER = "PREVIOUS-TENANT-SECRET\n";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostileImageTestKeyxxxxxxxxxxxxxxxxxxxxxx test@faults";
/** Characters no line of the host's output may carry (tab and newline aside). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let work: string;
let imageDir: string;
let runTmp: string;

function sh(cmd: string[], input?: string | Uint8Array): string {
  const r = Bun.spawnSync(cmd, { stdin: input === undefined ? "ignore" : Buffer.from(input), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** A disk the previous tenant filled with MARKER. */
function usedDisk(name: string, mib: number, dir = work): string {
  const d = join(dir, name);
  rmSync(d, { force: true });
  sh(["sh", "-c", `yes '${MARKER.trim()}' | head -c ${mib * MiB} > '${d}'`]);
  return d;
}
const markersIn = (file: string, from = 0): number => {
  const b = readFileSync(file).subarray(from);
  let n = 0;
  for (let i = b.indexOf(MARKER); i >= 0; i = b.indexOf(MARKER, i + MARKER.length)) n++;
  return n;
};

/** A files-only Linux root (enough for every task) with `extra` files and symlinks on top. */
function tree(name: string, extra: Record<string, string> = {}, links: Record<string, string> = {}): string {
  const t = join(work, `${name}-tree`);
  const files: Record<string, string> = {
    ...MINIMAL_ROOT_FILES,
    "etc/fstab": "# root\n",
    "etc/ssh/sshd_config": "PasswordAuthentication yes\n",
    "tmp/.keep": "",
    ...extra,
  };
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(t, p)), { recursive: true });
    writeFileSync(join(t, p), text);
  }
  mkdirSync(join(t, "root"), { recursive: true, mode: 0o700 });
  for (const [p, target] of Object.entries(links)) {
    rmSync(join(t, p), { recursive: true, force: true });
    mkdirSync(dirname(join(t, p)), { recursive: true });
    symlinkSync(target, join(t, p));
  }
  return t;
}

function ext4(name: string, src: string, mib: number): string {
  const f = join(work, `${name}.ext4`);
  sh(["mke2fs", "-q", "-F", "-t", "ext4", "-d", src, f, `${mib}M`]);
  return f;
}
function btrfs(name: string, src: string, mib = 128): string {
  const f = join(work, `${name}.btrfs`);
  sh(["truncate", "-s", `${mib}M`, f]);
  sh(["mkfs.btrfs", "-q", "-f", "--rootdir", src, f]);
  return f;
}
/** Loop-mount a filesystem file, run f on it, unmount (whatever happens). */
function withMounted<T>(file: string, f: (mnt: string) => T, type?: string): T {
  const mnt = mkdtempSync(join(work, "mnt-"));
  sh(["mount", ...(type ? ["-t", type] : []), "-o", "loop", file, mnt]);
  try {
    return f(mnt);
  } finally {
    sh(["umount", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}
function xfs(name: string, src: string, mib = 300): string {
  const f = join(work, `${name}.xfs`);
  sh(["truncate", "-s", `${mib}M`, f]);
  sh(["mkfs.xfs", "-q", "-f", f]);
  if (src) withMounted(f, (mnt) => sh(["cp", "-a", `${src}/.`, mnt]));
  return f;
}
function ntfs(name: string, mib = 16): string {
  const f = join(work, `${name}.ntfs`);
  sh(["truncate", "-s", `${mib}M`, f]);
  sh(["mkntfs", "-q", "-F", "-Q", f]);
  return f;
}
/** Overwrite bytes of a file at an offset. */
function poke(file: string, offset: number, bytes: Uint8Array): void {
  const fd = Bun.spawnSync(["dd", `of=${file}`, "bs=1", `seek=${offset}`, "conv=notrunc", "status=none"], { stdin: Buffer.from(bytes) });
  if (fd.exitCode !== 0) throw new Error(`poke ${file}`);
}

/** msdos disk image (diskdump) holding the given filesystem files as partitions 1..n, into IMAGE_DIR. */
function diskdump(name: string, parts: { file: string; type: string }[]): { path: string; size: number } {
  let at = 1; // MiB
  const layout = parts.map((p) => {
    const mib = Math.ceil(lstatSync(p.file).size / MiB);
    const r = { ...p, start: at, mib };
    at += mib;
    return r;
  });
  const img = join(imageDir, name);
  rmSync(img, { force: true });
  sh(["truncate", "-s", `${at}M`, img]);
  sh(["sfdisk", "-q", img], `label: dos\n${layout.map((p) => `start=${p.start * 2048}, size=${p.mib * 2048}, type=${p.type}`).join("\n")}\n`);
  for (const p of layout) sh(["dd", `if=${p.file}`, `of=${img}`, "bs=1M", `seek=${p.start}`, "conv=notrunc,sparse", "status=none"]);
  return { path: img, size: at * MiB };
}

async function create(spec: Partial<CreateSpec> & { disks: string[]; osp: Record<string, string> }): Promise<ScriptRun> {
  const r = await runCreate({ imageDir, extraEnv: { TMPDIR: runTmp }, ...spec, config: { HELPER_SOFT_TIMEOUT: "300", ...spec.config } });
  console.log(`--- ${spec.osp.img_id}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s\n${r.output.split("\n").filter((l) => !l.startsWith("HELPER:") || /WARNING|ERROR|fstab|journal/.test(l)).join("\n")}`);
  return r;
}

/** exit 1, one last line naming the cause, nothing left behind, no control character anywhere. */
function expectOneLineFailure(r: ScriptRun, cause: RegExp): void {
  expect(r.code).toBe(1);
  expect(r.lastLine).toMatch(/^snf-image create: ERROR: /);
  expect(r.lastLine).toMatch(cause);
  expect(r.output).not.toMatch(CONTROL);
  expect(r.output).not.toContain(PASSWORD);
  expect(leftovers(work, runTmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
}

beforeAll(() => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-faults-content-"));
  imageDir = join(work, "images");
  runTmp = join(work, "tmp");
  mkdirSync(imageDir);
  mkdirSync(runTmp);
});
afterAll(() => {
  if (!work) return;
  Bun.spawnSync(["sh", "-c", `grep -F '${work}' /proc/mounts | cut -d' ' -f2 | xargs -r -n1 umount -l`]);
  rmSync(work, { recursive: true, force: true });
});

describe("empty images and a full disk: one line before or instead of a half-written disk", () => {
  test("0-byte raw image: refused before the disk is touched", async () => {
    writeFileSync(join(imageDir, "empty"), "");
    const disk = usedDisk("disk-empty", 16);
    const before = markersIn(disk);
    const r = await create({ disks: [disk], osp: { img_id: "empty", img_format: "diskdump", img_passwd: PASSWORD } });
    expectOneLineFailure(r, /image .*empty.* is empty \(it has 0 bytes\): refusing to deploy it; the disk was not touched/);
    expect(r.output).not.toMatch(/copied 0 bytes/);
    expect(markersIn(disk)).toBe(before);
  }, 60_000);

  test("gzip of nothing as extdump: refused before the host writes the MBR prefix", async () => {
    writeFileSync(join(imageDir, "nothing.gz"), Bun.gzipSync(new Uint8Array(0)));
    const disk = usedDisk("disk-gz", 16);
    const before = markersIn(disk);
    const r = await create({ disks: [disk], osp: { img_id: "nothing.gz", img_format: "extdump", img_passwd: PASSWORD } });
    expectOneLineFailure(r, /is empty \(its gzip stream holds 0 bytes\)/);
    expect(markersIn(disk)).toBe(before);
  }, 60_000);

  test("a disk that holds less than it claims (sparse file on a full tmpfs): ENOSPC, one line", async () => {
    const small = join(work, "tiny-fs");
    mkdirSync(small);
    sh(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", small]);
    try {
      const disk = join(small, "disk");
      sh(["truncate", "-s", "64M", disk]); // claims 64 MiB, 8 can be stored
      sh(["sh", "-c", `head -c ${24 * MiB} /dev/urandom > '${join(imageDir, "random")}'`]);
      const r = await create({ disks: [disk], osp: { img_id: "random", img_format: "diskdump", img_passwd: PASSWORD } });
      expectOneLineFailure(r, /writing disk .*disk failed: ENOSPC/);
    } finally {
      sh(["umount", small]);
    }
  }, 60_000);
});

describe("hostile filesystems through the helper VM", () => {
  test("corrupt XFS, btrfs and NTFS superblocks: probed read-only, one line", async () => {
    const t = tree("corrupt");
    const x = xfs("corrupt", "");
    poke(x, 4, new Uint8Array(60)); // keep the XFSB magic, zero block size and counts
    const b = btrfs("corrupt", t);
    poke(b, 0x10000, new Uint8Array(32).fill(0xa5)); // superblock checksum
    poke(b, 0x10000 + 0x70, new Uint8Array(24).fill(0xff)); // root/chunk tree addresses
    const n = ntfs("corrupt");
    poke(n, 0x30, new Uint8Array(8).fill(0x7f)); // $MFT cluster far past the end
    diskdump("corrupt", [{ file: x, type: "83" }, { file: b, type: "83" }, { file: n, type: "7" }]);
    const disk = usedDisk("disk-corrupt", 600);
    const r = await create({ disks: [disk], osp: { img_id: "corrupt", img_format: "diskdump", img_passwd: PASSWORD } });
    expectOneLineFailure(r, /image customization failed: finding the root partition: cannot find the root partition/);
  }, 600_000);

  test("XFS root with symlink traps (hostname, machine-id, /root/.ssh climbing out of the root): every write lands inside the image", async () => {
    const oldId = "0123456789abcdef0123456789abcdef\n";
    const t = tree("traps", { "var/lib/real-machine-id": oldId }, {
      "etc/hostname": "../../../../../../../../tmp/escaped-hostname",
      "etc/machine-id": "/../../../../var/lib/real-machine-id",
      "root/.ssh": "../../../../",
    });
    const img = diskdump("traps", [{ file: xfs("traps", t), type: "83" }]);
    const disk = usedDisk("disk-traps", 400);
    const r = await create({
      disks: [disk],
      instance: "trapped.example.org",
      osp: { img_id: "traps", img_format: "diskdump", img_passwd: PASSWORD, auth_keys: KEY },
    });
    expect(r.output).not.toMatch(CONTROL);
    expect(leftovers(work, runTmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
    if (r.code !== 0) {
      // refusing is a correct answer too, as long as it is one line
      expectOneLineFailure(r, /image customization failed: /);
      return;
    }
    const m = mountDisk(disk, 1);
    try {
      // symlinks are followed as the guest would, re-rooted at the image root
      const hostnameAt = lstatSync(join(m.root, "etc/hostname")).isSymbolicLink() ? readlinkSync(join(m.root, "etc/hostname")) : "(regular file)";
      const found = [join(m.root, "tmp/escaped-hostname"), join(m.root, "etc/hostname")].filter((p) => existsSync(p) && readFileSync(p, "utf8").includes("trapped"));
      console.log(`hostname: /etc/hostname -> ${hostnameAt}; written to ${found.map((p) => p.slice(m.root.length)).join(", ")}`);
      expect(found.length).toBeGreaterThan(0);
      const keys = [join(m.root, "authorized_keys"), join(m.root, "root/.ssh/authorized_keys")].filter((p) => existsSync(p) && readFileSync(p, "utf8").includes(KEY));
      expect(keys.length).toBeGreaterThan(0);
      const id = readFileSync(join(m.root, "var/lib/real-machine-id"), "utf8");
      expect(id).toMatch(/^[0-9a-f]{32}\n$/);
      expect(id).not.toBe(oldId);
    } finally {
      m.close();
    }
    // nothing was written past the image's end but zeroes (ZERO_DISK_TAIL=cheap, the default)
    expect(markersIn(disk, img.size)).toBe(0);
  }, 600_000);
});

describe("hostile NTFS (ntfsdump) through the helper VM", () => {
  test("Windows image whose Setup\\Scripts and unattend.xml are symlinks climbing out of the root: written inside the image, one helper boot", async () => {
    const f = ntfs("wintrap", 32);
    withMounted(f, (mnt) => {
      mkdirSync(join(mnt, "Windows/System32/config"), { recursive: true });
      writeSystemHive(join(mnt, "Windows/System32/config/SYSTEM"), { current: 1, deny: 0 }); // DisableRemoteDesktopConnections needs it
      mkdirSync(join(mnt, "Windows/Setup/State"), { recursive: true });
      writeFileSync(join(mnt, "Windows/Setup/State/State.ini"), "[_CLEAN_]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n");
      mkdirSync(join(mnt, "Escape"));
      symlinkSync("../../../../../../../Escape", join(mnt, "Windows/Setup/Scripts"));
      symlinkSync("../../../../../outside-unattend.xml", join(mnt, "unattend.xml"));
    }, "ntfs-3g");
    copyFileSync(f, join(imageDir, "wintrap"));
    const disk = usedDisk("disk-wintrap", 64);
    const r = await create({ disks: [disk], instance: "win1", osp: { img_id: "wintrap", img_format: "ntfsdump", img_passwd: PASSWORD } });
    expect(r.output).not.toMatch(CONTROL);
    expect(leftovers(work, runTmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
    if (r.code !== 0) {
      expectOneLineFailure(r, /image customization failed: /);
      return;
    }
    await withLoop(disk, async (d) => {
      const cat = (p: string) => Bun.spawnSync(["ntfscat", "-f", d.partitions[0]!, p], { stdout: "pipe", stderr: "pipe" }).stdout.toString();
      // re-rooted through the link, or the link replaced: both stay inside the image
      const at = (paths: string[]) => paths.find((p) => cat(p).length > 0);
      const scriptAt = at(["/Escape/SetupComplete.cmd", "/Windows/Setup/Scripts/SetupComplete.cmd"]);
      const answerAt = at(["/outside-unattend.xml", "/unattend.xml"]);
      console.log(`SetupComplete.cmd written at ${scriptAt}, the answer file at ${answerAt}`);
      const script = scriptAt ? cat(scriptAt) : "";
      const answer = answerAt ? cat(answerAt) : "";
      expect(script.length).toBeGreaterThan(0);
      expect(answer).toContain("<ComputerName>win1</ComputerName>");
      expect(answer).not.toContain(PASSWORD);
    });
  }, 600_000);
});

describe("text from the image never forges a line; dirty journals deploy", () => {
  test("dirty ext4 journal (real transaction) + fstab/os-release/hostname with newlines, C1 and bidi controls: deploys with a warning, no forged line", async () => {
    const forged = "\u2714\\040vm1.example.org\\040deployed\\040in\\0400.1\\040s";
    const t = tree("dirty", {
      "etc/fstab": [
        "LABEL=root / ext4 defaults 0 1",
        `tmpfs /run/x\\012${forged}\\012HELPER:\\040SUCCESS tmpfs defaults 0 0`,
        "tmpfs /mnt/\\302\\233\\033[31m\u202eevil\u2066\u0085red\\015over tmpfs defaults 0 0",
        "",
      ].join("\n"),
      "etc/os-release": 'ID=debian\nPRETTY_NAME="Evil\u009b2J\u202eOS\x1b]0;title\x07"\nVERSION_ID=12\n',
      "etc/hostname": "tem\x1b[2Jplate\u202e\r\nsnf-image create: deployed\n",
    });
    const fsFile = ext4("dirty", t, 48);
    sh(["e2label", fsFile, "root"]);
    // Snapshot of a running system: mounted, written, synced to the journal, copied while still mounted.
    const snap = join(work, "dirty-snapshot.ext4");
    withMounted(fsFile, (mnt) => {
      writeFileSync(join(mnt, "root/after-snapshot.txt"), "written while mounted\n");
      sh(["sync", "-f", join(mnt, "root/after-snapshot.txt")]);
      copyFileSync(fsFile, snap);
    }, "ext4");
    const h = sh(["dumpe2fs", "-h", snap]);
    expect(h).toMatch(/^Filesystem features:.*needs_recovery/m);
    expect(h).toMatch(/^Journal start:\s+[1-9]/m); // transactions in the journal, not just the flag
    const img = diskdump("dirty", [{ file: snap, type: "83" }]);
    const disk = usedDisk("disk-dirty", 96);
    const r = await create({ disks: [disk], osp: { img_id: "dirty", img_format: "diskdump", img_passwd: PASSWORD } });
    expect(r.code).toBe(0);
    expect(r.lastLine).toMatch(/^\u2714 vm1\.example\.org deployed in /);
    expect(r.output).toMatch(/WARN.*helper: ext4 on \w+ has a journal that needs recovery .*replaying it with e2fsck -p/);
    // no line of its own from the image, no control character anywhere
    const lines = r.output.split("\n");
    expect(lines.filter((l) => /^(HELPER: )?(SUCCESS|\u2714)/.test(l))).toEqual([r.lastLine]);
    expect(r.output).toMatch(/fstab line 2 \(\/run\/x \| \u2714 vm1\.example\.org deployed in 0\.1 s \| HELPER: SUCCESS\) not mounted/);
    expect(r.output).not.toMatch(CONTROL);
    expect(leftovers(work, runTmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
    const m = mountDisk(disk, 1); // ro,noload: the file is there only if the helper replayed the journal
    try {
      expect(sh(["dumpe2fs", "-h", `${m.loop}p1`])).not.toMatch(/needs_recovery/);
      expect(m.read("/root/after-snapshot.txt")).toBe("written while mounted\n");
      expect(m.read("/etc/hostname").trim()).toBe("vm1.example.org");
    } finally {
      m.close();
    }
    // the previous tenant's data past the image is gone (ZERO_DISK_TAIL=cheap, the default)
    expect(markersIn(disk, img.size)).toBe(0);
  }, 600_000);

  test("an ERROR line quoting the image (btrfs root, fstab mount point with \\012, C1 and bidi): one clean last line; ZERO_DISK_TAIL=no leaves the old data", async () => {
    const t = tree("inject", {
      "etc/fstab": "LABEL=root / btrfs defaults 0 0\n/dev/vdb1 /srv/\\302\\233\\033[31mred\u202ex\\012snf-image\\040create:\\040deployed\\040in\\0401\\040s ext4 defaults 0 2\n",
    });
    const img = diskdump("inject", [{ file: btrfs("inject", t), type: "83" }]);
    const disk = usedDisk("disk-inject", 192);
    const r = await create({ disks: [disk], config: { ZERO_DISK_TAIL: "no" }, osp: { img_id: "inject", img_format: "diskdump", img_passwd: PASSWORD } });
    expectOneLineFailure(r, /image customization failed: MountImage: fstab entry \/dev\/vdb1 for \/srv\/.*\[31mredx \| snf-image create: deployed in 1 s is not by UUID or LABEL$/);
    expect(r.output.split("\n").filter((l) => l.startsWith("snf-image create: deployed"))).toEqual([]);
    // as documented: with ZERO_DISK_TAIL=no what was past the image stays
    expect(markersIn(disk, img.size)).toBeGreaterThan(0);
  }, 600_000);
});

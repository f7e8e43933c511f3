/**
 * `create` end to end on this machine, the way Ganeti calls it: a real
 * debootstrapped Debian image, the built helper VM under TCG, file and loop
 * block device disks; then the disk is checked from outside the helper.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, leftovers, runCreate, type CreateSpec, placeImage } from "../lib/deploy.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Corr3ct-Horse";
const b64 = (s: string) => Buffer.from(s).toString("base64");
let work: string;
let imageDir: string;
let msdos: DebianImage;
let gpt: DebianImage;

/** qemu processes working on this test's disks. */
const qemuPids = () => leftovers(work, runTmp).qemu;
/** Loop devices backed by this test's files (other work on the machine may use others). */
const loopDevices = () => leftovers(work, runTmp).loops.join("\n");
/** Every create in this file runs with TMPDIR=runTmp: whatever it leaves there is a leftover. */
let runTmp: string;
function tempLeftovers(): string[] {
  return readdirSync(runTmp);
}
function freshDisk(name: string, size = "3G"): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  Bun.spawnSync(["truncate", "-s", size, d]);
  return d;
}
const personality = JSON.stringify([
  { path: "/root/injected.txt", contents: b64("hello from snf-image\n"), owner: "root", group: "root", mode: 0o600 },
  { path: "/etc/motd", contents: b64("welcome\n"), mode: 0o644 },
]);

beforeAll(async () => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-create-test-"));
  imageDir = join(work, "images");
  mkdirSync(imageDir);
  runTmp = join(work, "tmp");
  mkdirSync(runTmp);
  msdos = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  gpt = await debianImage({ suite: "bookworm", label: "gpt", rootFs: "ext4" });
  placeImage(msdos.path, join(imageDir, "bookworm-msdos"));
  placeImage(gpt.path, join(imageDir, "bookworm-gpt-x86_64.diskdump")); // the seed's legacy naming
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function checkDisk(disk: string, rootPart: number, hostname: string) {
  const m = mountDisk(disk, rootPart);
  try {
    expect(m.read("/etc/hostname").trim()).toBe(hostname);
    expect(m.read("/etc/hosts")).toMatch(new RegExp(`^127\\.0\\.1\\.1\\s+${hostname.replace(/\./g, "\\.")}`, "m"));
    const hash = shadowHash(m.read("/etc/shadow"), "root")!;
    expect(hash.startsWith("$6$")).toBe(true);
    expect(verifyCrypt(PASSWORD, hash)).toBe(true);
    expect(verifyCrypt("wrong", hash)).toBe(false);
    expect(m.read("/root/injected.txt")).toBe("hello from snf-image\n");
    expect(m.stat("/root/injected.txt")).toMatchObject({ mode: 0o600, uid: 0, gid: 0 });
    expect(m.stat("/etc/motd").mode).toBe(0o644);
  } finally {
    m.close();
  }
}

describe("create, the Ganeti way", () => {
  test("msdos image onto a file disk", async () => {
    const disk = freshDisk("file-disk");
    const before = { loops: loopDevices() };
    // Watch every process's argv while create runs: the password must never be in one.
    let seenInArgv = "";
    const argvWatch = setInterval(() => {
      for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
        try {
          const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8");
          if (argv.includes(PASSWORD)) seenInArgv = argv.replace(/\0/g, " ");
        } catch {}
      }
    }, 50);
    const r = await runCreate({
      disks: [disk],
      instance: "web1.example.org",
      imageDir,
      extraEnv: { TMPDIR: runTmp },
      osp: { img_id: "bookworm-msdos", img_format: "diskdump", img_passwd: PASSWORD, img_personality: personality },
    });
    clearInterval(argvWatch);
    console.log(r.output.split("\n").filter((l) => !l.startsWith("HELPER:")).join("\n"));
    expect(r.code).toBe(0);
    expect(seenInArgv).toBe("");
    expect(r.output).not.toContain(PASSWORD);
    expect(r.output).toContain("deployed in");
    checkDisk(disk, msdos.rootPartition, "web1.example.org");
    expect(qemuPids()).toEqual([]);
    expect(tempLeftovers()).toEqual([]);
    expect(loopDevices()).toBe(before.loops);
  }, 600_000);

  test("GPT image (legacy NAME-x86_64.FORMAT naming) onto a loop block device", async () => {
    const file = freshDisk("block-disk");
    const loop = Bun.spawnSync(["losetup", "-f", "--show", file], { stdout: "pipe" }).stdout.toString().trim();
    try {
      const r = await runCreate({
        disks: [loop],
        instance: "db1",
        imageDir,
        extraEnv: { TMPDIR: runTmp },
        osp: { img_id: "bookworm-gpt", img_format: "diskdump", img_passwd: PASSWORD, img_personality: personality },
      });
      expect(r.code).toBe(0);
      expect(r.output).toMatch(/deprecated|legacy/i);
    } finally {
      Bun.spawnSync(["losetup", "-d", loop]);
    }
    checkDisk(file, gpt.rootPartition, "db1");
  }, 600_000);
});

describe("bad input and faults: one line, non-zero, nothing left behind", () => {
  const ok: Omit<CreateSpec, "disks"> = { imageDir: "", osp: {} };
  const spec = (patch: Partial<CreateSpec> & { osp?: Record<string, string> }): CreateSpec => ({
    disks: [join(work, "bad-disk")],
    ...ok,
    imageDir,
    ...patch,
    extraEnv: { TMPDIR: runTmp, ...patch.extraEnv },
    osp: { img_id: "bookworm-msdos", img_format: "diskdump", img_passwd: PASSWORD, ...patch.osp },
  });

  // Every row has all four fields: bun passes a done callback in place of a missing one.
  const cases: [string, () => Partial<CreateSpec> & { osp?: Record<string, string> }, RegExp, boolean][] = [
    ["missing image", () => ({ osp: { img_id: "no-such-image" } }), /image no-such-image not found/, false],
    ["image escaping IMAGE_DIR", () => ({ osp: { img_id: "../../etc/passwd" } }), /outside|not found|IMAGE_DIR/, false],
    ["image larger than the disk", () => ({ disks: [freshDisk("small-disk", "100M")] }), /does not fit/, false],
    ["DISK_0_PATH missing", () => ({ disks: [join(work, "nonexistent")] }), /does not exist/, false],
    ["API version 15", () => ({ extraEnv: { OS_API_VERSION: "15" } }), /API version "15" is not supported/, false],
    ["missing img_id", () => ({ osp: { img_id: "" } }), /img_id: missing/, false],
    ["no helper built", () => ({ config: { HELPER_DIR: join(work, "no-helper") } }), /helper image not found/, false],
    ["helper of another protocol", () => ({ config: { HELPER_DIR: otherHelper() } }), /protocol/, false],
    ["qemu missing", () => ({ config: { QEMU: "/nonexistent/qemu" } }), /qemu.*not found/, false],
    // a resumed helper now finishes this image in under 2 s: a cold boot (kernel alone ≥ 1 s under TCG) cannot in 1 s
    ["helper soft timeout", () => ({ config: { HELPER_SOFT_TIMEOUT: "1", HELPER_RESUME: "off" } }), /HELPER_SOFT_TIMEOUT=1 s/, true],
    ["helper reports an error", () => ({ osp: { inst_properties: '{"USERS":"root nosuchuser"}' } }), /customization failed: .*nosuchuser/, true],
    [
      "helper powers off without a result",
      () => ({ osp: { img_properties: JSON.stringify({ CUSTOM_TASK: b64("echo bye; poweroff -f\n") }) } }),
      /without reporting a result/,
      true,
    ],
  ];

  function otherHelper(): string {
    const d = join(work, "old-helper");
    if (!existsSync(d)) {
      mkdirSync(d);
      for (const f of readdirSync(HELPER_DIR)) Bun.spawnSync(["ln", "-s", join(HELPER_DIR, f), join(d, f)]);
      rmSync(join(d, "manifest.json"));
      const m = JSON.parse(readFileSync(join(HELPER_DIR, "manifest.json"), "utf8"));
      writeFileSync(join(d, "manifest.json"), JSON.stringify({ ...m, protocol: 999 }));
    }
    return d;
  }

  test.each(cases)("%s", async (_name, make, re, touchesDisk) => {
    const disk = join(work, "bad-disk");
    if (!existsSync(disk)) freshDisk("bad-disk");
    const before = { loops: loopDevices() };
    const r = await runCreate(spec(make()));
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/^snf-image create: ERROR: /);
    expect(r.lastLine).toMatch(re);
    expect(r.output).not.toContain(PASSWORD);
    expect(qemuPids()).toEqual([]);
    expect(tempLeftovers()).toEqual([]);
    expect(loopDevices()).toBe(before.loops);
    if (!touchesDisk) expect(r.output).not.toContain("Starting image copy");
  }, 600_000);
});

// Cancelling (SIGTERM), SIGKILL and the hard timeout at every phase: faults-lifecycle.test.ts.

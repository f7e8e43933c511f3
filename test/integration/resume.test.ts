/**
 * The helper VM's two starts, through real `create` runs on a real Debian
 * image (issue 12): the first run with no saved state boots cold and saves
 * the waiting VM; the runs after it resume that state. Checked from outside:
 * the saved state holds no secret, every resumed deployment is its own
 * (machine-id, password salt, temp names from a reseeded kernel generator),
 * a broken state falls back to a cold boot and is replaced, and
 * HELPER_RESUME=off never saves anything.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, leftovers, placeImage, runCreate } from "../lib/deploy.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Res0med-Pa55word-7f3a";
let work: string;
let imageDir: string;
let runTmp: string;
/** A helper dir of our own (hard links to the built image: same files, same key), so its snapshots are ours. */
let helperDir: string;
let image: DebianImage;
const snapDir = () => join(helperDir, "snapshots");
const states = () => (fs.existsSync(snapDir()) ? fs.readdirSync(snapDir()).filter((n) => n.endsWith(".state")) : []);

beforeAll(async () => {
  work = fs.mkdtempSync("/var/tmp/snf-resume-test-");
  imageDir = join(work, "images");
  runTmp = join(work, "tmp");
  helperDir = join(work, "helper");
  for (const d of [imageDir, runTmp, helperDir]) fs.mkdirSync(d);
  for (const f of fs.readdirSync(HELPER_DIR)) {
    if (fs.statSync(join(HELPER_DIR, f)).isFile()) fs.linkSync(join(HELPER_DIR, f), join(helperDir, f));
  }
  image = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  placeImage(image.path, join(imageDir, "bookworm"));
}, 1_800_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function create(name: string, config: Record<string, string> = {}) {
  const disk = join(work, `${name}.disk`);
  fs.rmSync(disk, { force: true });
  Bun.spawnSync(["truncate", "-s", "3G", disk]);
  const r = await runCreate({
    disks: [disk],
    instance: name,
    imageDir,
    extraEnv: { TMPDIR: runTmp },
    config: { HELPER_DIR: helperDir, ...config },
    osp: { img_id: "bookworm", img_format: "diskdump", img_passwd: PASSWORD },
  });
  if (r.code !== 0) console.log(r.output);
  expect(r.code).toBe(0);
  expect(r.output).not.toContain(PASSWORD);
  const left = leftovers(work, runTmp, PASSWORD);
  expect(left.qemu).toEqual([]);
  expect(left.temp).toEqual([]);
  const m = mountDisk(disk, image.rootPartition);
  try {
    const hash = shadowHash(m.read("/etc/shadow"), "root")!;
    expect(verifyCrypt(PASSWORD, hash)).toBe(true);
    expect(m.read("/etc/hostname").trim()).toBe(name);
    return { output: r.output, machineId: m.read("/etc/machine-id").trim(), hash, mtime: m.mtime("/etc/hostname") };
  } finally {
    m.close();
  }
}

describe("helper VM resume", () => {
  const runs: Awaited<ReturnType<typeof create>>[] = [];

  test("the first run boots cold and saves the waiting VM; the state is private and holds no secret", async () => {
    expect(states()).toEqual([]);
    const r = await create("first");
    expect(r.output).toContain("state saved");
    expect(r.output).toMatch(/helper VM booted; disks attached/);
    const [state] = states();
    expect(state).toBeDefined();
    const st = fs.statSync(join(snapDir(), state!));
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBeGreaterThan(16 * 1024 * 1024);
    // saved before the helper read its parameters: no password in it, nor in anything next to it
    expect(Bun.spawnSync(["grep", "-rlF", PASSWORD, snapDir()]).stdout.toString()).toBe("");
    expect(fs.readdirSync(snapDir()).filter((n) => n.startsWith("."))).toEqual([]);
    runs.push(r);
  }, 600_000);

  test("later runs resume it, and each deployment is its own (machine-id, salt) with a current clock", async () => {
    // far enough from the save that a guest clock left at the save's time would show
    await Bun.sleep(3000);
    const t0 = Date.now();
    for (const name of ["second", "third"]) {
      const r = await create(name);
      expect(r.output).toMatch(/helper VM resumed from its saved state; disks attached/);
      expect(r.output).not.toContain("state saved");
      // the guest's clock was set from the host: files it wrote carry today's time, not the save's
      expect(r.mtime).toBeGreaterThanOrEqual(t0 - 1000);
      runs.push(r);
    }
    const ids = runs.map((r) => r.machineId);
    const salts = runs.map((r) => r.hash.split("$")[2]);
    expect(new Set(ids).size).toBe(runs.length);
    expect(new Set(salts).size).toBe(runs.length);
    expect(ids[1]).toMatch(/^[0-9a-f]{32}$/);
  }, 600_000);

  test("a state that cannot be loaded: a warning, a cold boot, and a new state in its place", async () => {
    const [state] = states();
    const file = join(snapDir(), state!);
    const size = fs.statSync(file).size;
    // same size (the description still matches), garbage inside
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, Buffer.alloc(1024 * 1024, 0x5a), 0, 1024 * 1024, 0);
    fs.closeSync(fd);
    const r = await create("fallback");
    expect(r.output).toContain("could not be resumed");
    expect(r.output).toContain("state saved");
    expect(fs.statSync(file).size).toBeGreaterThan(0);
    const head = Buffer.alloc(4);
    const rfd = fs.openSync(file, "r");
    fs.readSync(rfd, head, 0, 4, 0);
    fs.closeSync(rfd);
    expect(head.equals(Buffer.from([0x5a, 0x5a, 0x5a, 0x5a]))).toBe(false);
    expect(size).toBeGreaterThan(0);
    const again = await create("after-fallback");
    expect(again.output).toMatch(/helper VM resumed from its saved state/);
  }, 600_000);

  test("HELPER_RESUME=off boots cold and saves nothing", async () => {
    fs.rmSync(snapDir(), { recursive: true, force: true });
    const r = await create("cold", { HELPER_RESUME: "off" });
    expect(r.output).toMatch(/helper VM booted; disks attached/);
    expect(r.output).not.toContain("state saved");
    expect(states()).toEqual([]);
  }, 600_000);
});

/**
 * Filesystem resize (ext4 on plain files: resize2fs and e2fsck work on
 * files), swap, the cloud-init seed, SELinux relabel and the custom task,
 * against fake image roots.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { run } from "../../helper/lib/exec.ts";
import { grow, parseResize2fsBlocks, readHeader } from "../../helper/lib/e2fs.ts";
import { task as resizeUnmounted } from "../../helper/tasks/FilesystemResizeUnmounted.ts";
import { task as resizeMounted } from "../../helper/tasks/FilesystemResizeMounted.ts";
import { task as addSwap } from "../../helper/tasks/AddSwap.ts";
import { task as initDatasource } from "../../helper/tasks/InitializeDatasource.ts";

import { selinuxMode, task as selinux } from "../../helper/tasks/SELinuxAutorelabel.ts";
import { task as customTask } from "../../helper/tasks/RunCustomTask.ts";
import { fakeCtx, fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";
import type { Partition } from "../../helper/task.ts";

const MiB = 1024 * 1024;
const SEED_DIR = "/var/lib/cloud/seed/nocloud-net";
const DATASOURCE_CFG = "/etc/cloud/cloud.cfg.d/99_snf-image-datasource.cfg";
const CLEAR_SCRIPT = "/var/lib/cloud/scripts/per-once/snf-image-clear-userdata.sh";
let fr: FakeRoot;
afterEach(() => fr?.cleanup());

async function ext4File(mib: number): Promise<string> {
  const file = path.join(fr.dir, "part.img");
  fs.writeFileSync(file, "");
  fs.truncateSync(file, mib * MiB);
  await run(["mkfs.ext4", "-q", "-F", "-b", "4096", file]);
  return file;
}

/** A context whose disk has one partition: the given file. */
function ctxWithPartition(file: string, properties: Record<string, string> = {}, extra: Partial<Partition> = {}) {
  const ctx = fakeCtx(fr, { properties });
  const part: Partition = { number: 1, dev: file, startSector: 2048, sizeSectors: fs.statSync(file).size / 512, type: "83", ...extra };
  ctx.disk = { ...ctx.disk, dev: "/dev/null", partitions: [part] };
  ctx.rootPartition = part;
  return ctx;
}

describe("FilesystemResizeUnmounted", () => {
  test("grows a clean ext4 to the size of its (file) partition", async () => {
    fr = fakeRoot();
    const file = await ext4File(32);
    fs.truncateSync(file, 96 * MiB);
    const ctx = ctxWithPartition(file);
    await resizeUnmounted.run(ctx);
    const h = await readHeader(run, file);
    expect(h.blockCount * h.blockSize).toBe(96 * MiB);
    expect(h.state).toBe("clean");
    expect(ctx.infos.join("\n")).toContain("8192 → 24576 blocks");
  });

  test("the block count comes from resize2fs's own report (no extra dumpe2fs), also when already full", async () => {
    fr = fakeRoot();
    const file = await ext4File(32);
    const calls: string[] = [];
    const counting: typeof run = (cmd, opts) => (calls.push(cmd[0]!), run(cmd, opts));
    expect(await grow(counting, file, "ext4 on part.img")).toBe(8192);
    fs.truncateSync(file, 48 * MiB);
    expect(await grow(counting, file, "ext4 on part.img")).toBe(12288);
    expect(calls).toEqual(["resize2fs", "resize2fs"]);
    expect((await readHeader(run, file)).blockCount).toBe(12288);
    expect(parseResize2fsBlocks("The filesystem on /dev/vda1 is now 1048320 (4k) blocks long.\n")).toBe(1048320);
    expect(parseResize2fsBlocks("The filesystem is already 8192 (4k) blocks long.  Nothing to do!\n")).toBe(8192);
    expect(parseResize2fsBlocks("something else")).toBeUndefined();
  });

  test("replays a journal that needs recovery (with a warning), then grows", async () => {
    fr = fakeRoot();
    const file = await ext4File(32);
    await run(["debugfs", "-w", "-R", "feature needs_recovery", file]);
    fs.truncateSync(file, 64 * MiB);
    const ctx = ctxWithPartition(file);
    await resizeUnmounted.run(ctx);
    expect(ctx.warnings.join("\n")).toMatch(/ext4 on part\.img has a journal that needs recovery .*replaying it with e2fsck -p/);
    const h = await readHeader(run, file);
    expect(h.features).not.toContain("needs_recovery");
    expect(h.state).toBe("clean");
    expect(h.blockCount * h.blockSize).toBe(64 * MiB);
  });

  test("refuses an ext4 that is not clean", async () => {
    fr = fakeRoot();
    const file = await ext4File(32);
    await run(["debugfs", "-w", "-R", "ssv state 0", file]);
    await expect(resizeUnmounted.run(ctxWithPartition(file))).rejects.toThrow(/ext4 on part\.img is not clean \(state: not clean\)/);
  });

  test("skips other filesystems (left to the mounted resize)", async () => {
    fr = fakeRoot();
    const file = path.join(fr.dir, "x.img");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 300 * MiB);
    await run(["mkfs.xfs", "-q", "-f", file]);
    const ctx = ctxWithPartition(file);
    await resizeUnmounted.run(ctx);
    expect(ctx.infos.join("\n")).toMatch(/xfs on x\.img: not ext2\/3\/4/);
    // and the mounted task leaves ext4 alone
    const e = await ext4File(16);
    const ctx2 = ctxWithPartition(e);
    await resizeMounted.run(ctx2);
    expect(ctx2.infos.join("\n")).toMatch(/ext4 on part\.img: not resized while mounted/);
  });
});

describe("AddSwap", () => {
  test("SWAP=<n>:<MiB> mkswaps partition n and adds it to fstab once", async () => {
    fr = fakeRoot();
    const swapFile = path.join(fr.dir, "swap.img");
    fs.writeFileSync(swapFile, "");
    fs.truncateSync(swapFile, 16 * MiB);
    const ctx = ctxWithPartition(swapFile, { SWAP: "1:16" });
    fs.chmodSync(path.join(fr.root, "etc/fstab"), 0o600);
    await addSwap.run(ctx);
    const uuid = (await run(["blkid", "-o", "value", "-s", "UUID", swapFile])).stdout.trim();
    expect((await run(["blkid", "-o", "value", "-s", "TYPE", swapFile])).stdout.trim()).toBe("swap");
    const fstab = fr.read("/etc/fstab");
    expect(fstab).toBe(`UUID=1234 / ext4 errors=remount-ro 0 1\nUUID=${uuid} none swap sw 0 0\n`);
    expect(modeOf(path.join(fr.root, "etc/fstab"))).toBe(0o600);
  });

  test("missing swap partition is an error; under CLOUD_INIT a swap file is requested instead", async () => {
    fr = fakeRoot({ "/etc/cloud/cloud.cfg": "x: 1\n" });
    const file = path.join(fr.dir, "p.img");
    fs.writeFileSync(file, "");
    await expect(addSwap.run(ctxWithPartition(file, { SWAP: "2:64" }))).rejects.toThrow(/swap partition 2 does not exist/);
    await addSwap.run(ctxWithPartition(file, { SWAP: "2:64", CLOUD_INIT: "yes" }));
    expect(fr.read("/etc/cloud/cloud.cfg.d/98_snf-image-AddSwap.cfg")).toContain(`size: ${64 * MiB}`);
  });
});

describe("InitializeDatasource", () => {
  test("writes the NoCloud seed (600) and the datasource list under CLOUD_INIT", async () => {
    fr = fakeRoot({ "/etc/cloud/cloud.cfg": "datasource_list: [ Ec2 ]\n" });
    const userdata = "#cloud-config\npackages: [htop]\n";
    const ctx = fakeCtx(fr, { properties: { CLOUD_INIT: "yes" }, cloudUserdata: Buffer.from(userdata).toString("base64") });
    await initDatasource.run(ctx);
    const meta = fr.read(`${SEED_DIR}/meta-data`);
    expect(meta).toMatch(/^instance-id: "iid-snf-[0-9a-f]{16}"\nlocal-hostname: "vm1\.example\.org"\n$/);
    expect(fr.read(`${SEED_DIR}/user-data`)).toBe(userdata);
    expect(modeOf(path.join(fr.root, SEED_DIR, "meta-data"))).toBe(0o600);
    expect(modeOf(path.join(fr.root, SEED_DIR, "user-data"))).toBe(0o600);
    expect(fr.read(DATASOURCE_CFG)).toContain("datasource_list: [ NoCloud ]");
    expect(modeOf(path.join(fr.root, CLEAR_SCRIPT))).toBe(0o700);
  });

  test("does nothing without CLOUD_INIT; refuses an image without cloud-init; refuses bad base64", async () => {
    fr = fakeRoot();
    await initDatasource.run(fakeCtx(fr));
    expect(fs.existsSync(path.join(fr.root, SEED_DIR))).toBe(false);
    await expect(initDatasource.run(fakeCtx(fr, { properties: { CLOUD_INIT: "1" } }))).rejects.toThrow(/no \/etc\/cloud/);
    fr.write("/etc/cloud/cloud.cfg", "");
    // Bad base64 never reaches the task: the protocol schema refuses it on both sides.
    expect(() => fakeCtx(fr, { properties: { CLOUD_INIT: "1" }, cloudUserdata: "not base64!!" })).toThrow(/not base64/);
  });

  test("a symlinked seed dir cannot make it write outside the image", async () => {
    fr = fakeRoot({ "/etc/cloud/cloud.cfg": "" });
    const outside = path.join(fr.dir, "outside");
    fs.mkdirSync(outside);
    fs.mkdirSync(path.join(fr.root, "var/lib/cloud/seed"), { recursive: true });
    // Followed naively from the host this climbs to <dir>/outside; inside the image `..` stops at the root.
    fs.symlinkSync("../../../../../outside", path.join(fr.root, "var/lib/cloud/seed/nocloud-net"));
    await initDatasource.run(fakeCtx(fr, { properties: { CLOUD_INIT: "yes" } }));
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(fs.existsSync(path.join(fr.root, "outside", "meta-data"))).toBe(true);
  });
});

describe("SELinuxAutorelabel", () => {
  test("Red Hat with SELinux enforcing/permissive gets /.autorelabel; disabled or Debian does not", async () => {
    fr = fakeRoot({ "/etc/selinux/config": "# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n" });
    await selinux.run(fakeCtx(fr, {}, { distro: "debian" }));
    expect(fs.existsSync(path.join(fr.root, ".autorelabel"))).toBe(false);
    await selinux.run(fakeCtx(fr, {}, { distro: "redhat" }));
    expect(fs.existsSync(path.join(fr.root, ".autorelabel"))).toBe(true);
    fs.rmSync(path.join(fr.root, ".autorelabel"));
    fr.write("/etc/selinux/config", "SELINUX=disabled\n");
    await selinux.run(fakeCtx(fr, {}, { distro: "redhat" }));
    expect(fs.existsSync(path.join(fr.root, ".autorelabel"))).toBe(false);
    expect(selinuxMode('SELINUX="permissive" # x\n')).toBe("permissive");
  });
});

describe("RunCustomTask", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");

  test("runs the script with the helper's sh and SNF_IMAGE_TARGET; scratch is cleaned", async () => {
    fr = fakeRoot();
    const ctx = fakeCtx(fr, { properties: { CUSTOM_TASK: b64('echo "hello from $SNF_IMAGE_HOSTNAME" > "$SNF_IMAGE_TARGET/etc/custom"\necho done\n') } });
    await customTask.run(ctx);
    expect(fr.read("/etc/custom")).toBe("hello from vm1.example.org\n");
    expect(ctx.infos).toContain("custom task: done");
    expect(fs.readdirSync(fr.scratch)).toEqual([]);
  });

  test("a failing script fails the task with its last stderr lines", async () => {
    fr = fakeRoot();
    const ctx = fakeCtx(fr, { properties: { CUSTOM_TASK: b64("echo one >&2\necho 'cannot frobnicate' >&2\nexit 3\n") } });
    await expect(customTask.run(ctx)).rejects.toThrow(/custom task exited with status 3: one \| cannot frobnicate/);
    expect(fs.readdirSync(fr.scratch)).toEqual([]);
  });
});

/**
 * Partition growth and filesystem resize on real loop devices (root only):
 * FixPartitionTable re-reads the kernel's table, ext4 grows unmounted, XFS
 * and btrfs grow mounted.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { run } from "../../helper/lib/exec.ts";
import { readDisk } from "../../helper/disk.ts";
import { task as fixPartitionTable } from "../../helper/tasks/FixPartitionTable.ts";
import { task as resizeUnmounted } from "../../helper/tasks/FilesystemResizeUnmounted.ts";
import { task as resizeMounted } from "../../helper/tasks/FilesystemResizeMounted.ts";
import { fakeCtx, fakeRoot, type FakeRoot } from "../unit/helper-fixtures.ts";

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
const undo: Array<() => Promise<unknown> | unknown> = [];
let fr: FakeRoot | undefined;

afterEach(async () => {
  while (undo.length) {
    try {
      await undo.pop()!();
    } catch {
      // best effort
    }
  }
  fr?.cleanup();
  fr = undefined;
});

async function attach(file: string): Promise<string> {
  const dev = (await run(["losetup", "-P", "--show", "-f", file])).stdout.trim();
  undo.push(() => run(["losetup", "-d", dev], { allowFail: true }));
  // The partition scan of losetup -P is not reliable here; partx adds the nodes.
  await run(["partx", "-a", dev], { allowFail: true });
  return dev;
}

/** Image file → partition → mkfs → grow file → loop device with partitions. */
async function setup(label: string, mib: number, grownMib: number, mkfs: string[]): Promise<{ ctx: ReturnType<typeof fakeCtx>; dev: string }> {
  fr = fakeRoot();
  const file = path.join(fr.dir, "disk.img");
  fs.writeFileSync(file, "");
  fs.truncateSync(file, mib * MiB);
  await run(["sfdisk", "-q", file], { input: `label: ${label}\n,,L\n` });
  let dev = await attach(file);
  await run([...mkfs, `${dev}p1`]);
  await run(["losetup", "-d", dev]);
  undo.pop(); // detached: never detach that name again (another test may own it by then)
  fs.truncateSync(file, grownMib * MiB);
  dev = await attach(file);
  const ctx = fakeCtx(fr);
  ctx.disk = await readDisk(run, dev);
  ctx.rootPartition = ctx.disk.partitions[0]!;
  ctx.refreshDisk = async () => {
    ctx.disk = await readDisk(run, dev);
    ctx.rootPartition = ctx.disk.partitions[0]!;
  };
  return { ctx, dev };
}

async function mount(dev: string): Promise<string> {
  const mp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-resize-mnt-"));
  undo.push(() => fs.rmSync(mp, { recursive: true, force: true }));
  await run(["mount", dev, mp]);
  undo.push(() => run(["umount", mp], { allowFail: true }));
  return mp;
}

const bytesOf = async (dev: string) => Number((await run(["blockdev", "--getsize64", dev])).stdout.trim());

describe.skipIf(!isRoot)("resize on loop devices", () => {
  test("msdos + ext4: partition grows, kernel sees it, ext4 grows to fill it", async () => {
    const { ctx, dev } = await setup("dos", 64, 192, ["mkfs.ext4", "-q", "-F"]);
    await fixPartitionTable.run(ctx);
    expect(await bytesOf(`${dev}p1`)).toBe(192 * MiB - 2048 * 512);
    await resizeUnmounted.run(ctx);
    const h = (await run(["dumpe2fs", "-h", `${dev}p1`])).stdout;
    const blocks = Number(/Block count:\s+(\d+)/.exec(h)![1]);
    const bsize = Number(/Block size:\s+(\d+)/.exec(h)![1]);
    expect(blocks * bsize).toBeGreaterThan(190 * MiB - 2048 * 512);
  }, 60_000);

  test("GPT + XFS: grows mounted with xfs_growfs", async () => {
    const { ctx, dev } = await setup("gpt", 400, 800, ["mkfs.xfs", "-q", "-f"]);
    await fixPartitionTable.run(ctx);
    await resizeUnmounted.run(ctx); // skips XFS
    ctx.root = await mount(`${dev}p1`);
    const before = Number((await run(["df", "-B1", "--output=size", ctx.root])).stdout.split("\n")[1]);
    await resizeMounted.run(ctx);
    const after = Number((await run(["df", "-B1", "--output=size", ctx.root])).stdout.split("\n")[1]);
    expect(after).toBeGreaterThan(before + 300 * MiB);
  }, 60_000);

  test("GPT + btrfs: grows mounted with btrfs filesystem resize", async () => {
    const { ctx, dev } = await setup("gpt", 256, 512, ["mkfs.btrfs", "-q", "-f"]);
    await fixPartitionTable.run(ctx);
    ctx.root = await mount(`${dev}p1`);
    const before = Number((await run(["df", "-B1", "--output=size", ctx.root])).stdout.split("\n")[1]);
    await resizeMounted.run(ctx);
    const after = Number((await run(["df", "-B1", "--output=size", ctx.root])).stdout.split("\n")[1]);
    expect(after).toBeGreaterThan(before + 200 * MiB);
  }, 60_000);
});

/**
 * FixPartitionTable and the sfdisk wrapper, on plain image files (sfdisk
 * works on files; no loop device, no root-only tricks).
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { run } from "../../helper/lib/exec.ts";
import { readDisk, readTable, type PartitionTable } from "../../helper/disk.ts";
import { parseSwapPartition, partEnd, planGrow, resizeTarget } from "../../helper/lib/partition.ts";
import { task as fixPartitionTable } from "../../helper/tasks/FixPartitionTable.ts";
import { fakeCtx, fakeRoot, type FakeRoot } from "./helper-fixtures.ts";

const MiB = 1024 * 1024;
let fr: FakeRoot;
afterEach(() => fr?.cleanup());

/** A sparse image file of `mib` MiB partitioned by an sfdisk script. */
async function image(mib: number, script: string): Promise<string> {
  fr = fakeRoot();
  const file = path.join(fr.dir, "disk.img");
  fs.writeFileSync(file, "");
  fs.truncateSync(file, mib * MiB);
  if (script) await run(["sfdisk", "-q", file], { input: script });
  return file;
}

/** A task context whose disk is what the helper's main reads before the tasks run. */
async function ctxFor(file: string, properties: Record<string, string> = {}) {
  const ctx = fakeCtx(fr, { properties });
  ctx.disk = await readDisk(run, file);
  return ctx;
}

async function table(file: string): Promise<PartitionTable> {
  const t = await readTable(run, file);
  if (!t) throw new Error("no table");
  return t;
}

const sectors = (file: string) => fs.statSync(file).size / 512;

describe("FixPartitionTable on image files", () => {
  test("msdos primary: the last partition grows to the disk end, data and label id kept", async () => {
    const file = await image(64, "label: dos\nlabel-id: 0x12345678\n,20M,83\n,10M,83,*\n");
    const before = await table(file);
    // A marker at the start of partition 2 must survive.
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, Buffer.from("SNF-MARKER"), 0, 10, before.partitions[1]!.startSector * 512);
    fs.closeSync(fd);
    fs.truncateSync(file, 128 * MiB);
    const ctx = await ctxFor(file);
    await fixPartitionTable.run(ctx);
    const after = await table(file);
    expect(after.partitions).toHaveLength(2);
    expect(after.partitions[0]).toEqual(before.partitions[0]!);
    expect(after.partitions[1]!.startSector).toBe(before.partitions[1]!.startSector);
    expect(partEnd(after.partitions[1]!)).toBe(sectors(file) - 1);
    const dump = (await run(["sfdisk", "-d", file])).stdout;
    expect(dump).toContain("label-id: 0x12345678");
    expect(dump).toMatch(/disk\.img2 : .*type=83, bootable/);
    const buf = Buffer.alloc(10);
    const rfd = fs.openSync(file, "r");
    fs.readSync(rfd, buf, 0, 10, after.partitions[1]!.startSector * 512);
    fs.closeSync(rfd);
    expect(buf.toString()).toBe("SNF-MARKER");
    expect(ctx.infos.join("\n")).toContain("grew partition 2");
  });

  test("msdos logical: the extended partition and the last logical both grow", async () => {
    const file = await image(64, "label: dos\n,20M,83\n,,5\n,10M,83\n");
    fs.truncateSync(file, 128 * MiB);
    await fixPartitionTable.run(await ctxFor(file));
    const t = await table(file);
    const ext = t.partitions.find((p) => p.number === 2)!;
    const log = t.partitions.find((p) => p.number === 5)!;
    expect(ext.kind).toBe("extended");
    expect(log.kind).toBe("logical");
    expect(partEnd(ext)).toBe(sectors(file) - 1);
    expect(partEnd(log)).toBe(sectors(file) - 1);
  });

  test("GPT: backup header moved to the end, last partition grows, type/UUID/name kept", async () => {
    const file = await image(64, 'label: gpt\n,20M,L\nsize=10M,type=L,name="root fs"\n');
    const before = await table(file);
    const dumpBefore = (await run(["sfdisk", "-d", file])).stdout;
    const uuid2 = /disk\.img2 .*uuid=([0-9A-F-]+)/.exec(dumpBefore)![1]!;
    fs.truncateSync(file, 128 * MiB);
    await fixPartitionTable.run(await ctxFor(file));
    const after = await table(file);
    expect(after.lastLba).toBe(sectors(file) - 34);
    expect(after.partitions[1]!.startSector).toBe(before.partitions[1]!.startSector);
    expect(partEnd(after.partitions[1]!)).toBe(after.lastLba!);
    expect(after.partitions[1]!.type).toBe(before.partitions[1]!.type);
    const dump = (await run(["sfdisk", "-d", file])).stdout;
    expect(dump).toContain(`uuid=${uuid2}, name="root fs"`);
    // The table verifies cleanly (backup header at the end).
    const v = await run(["sfdisk", "--verify", file], { allowFail: true });
    expect(v.stdout + v.stderr).not.toMatch(/backup GPT table is not on the end/i);
  });

  test("already full size: no change and a clear info", async () => {
    const file = await image(64, "label: dos\n,,83\n");
    const before = (await run(["sfdisk", "-d", file])).stdout;
    const ctx = await ctxFor(file);
    await fixPartitionTable.run(ctx);
    expect((await run(["sfdisk", "-d", file])).stdout).toBe(before);
    expect(ctx.infos.join("\n")).toMatch(/already reaches the end/);
  });

  test("no partition table: a clear error", async () => {
    const file = await image(16, "");
    await expect(fixPartitionTable.run(await ctxFor(file))).rejects.toThrow(/has no partition table/);
  });

  test("SWAP=2:32 on msdos: root grows, a 32 MiB type-82 partition at the end", async () => {
    const file = await image(64, "label: dos\n,20M,83\n");
    fs.truncateSync(file, 256 * MiB);
    await fixPartitionTable.run(await ctxFor(file, { SWAP: "2:32" }));
    const t = await table(file);
    const [root, swap] = t.partitions;
    expect(swap!.number).toBe(2);
    expect(swap!.type).toBe("82");
    expect(partEnd(swap!)).toBe(sectors(file) - 1);
    expect(swap!.sizeSectors * 512).toBeGreaterThanOrEqual(32 * MiB);
    expect(swap!.sizeSectors * 512).toBeLessThan(34 * MiB);
    expect(swap!.startSector % 2048).toBe(0);
    expect(partEnd(root!)).toBe(swap!.startSector - 1);
  });

  test("SWAP=5:16 on msdos without extended: creates an extended and a logical swap", async () => {
    const file = await image(64, "label: dos\n,20M,83\n");
    fs.truncateSync(file, 128 * MiB);
    await fixPartitionTable.run(await ctxFor(file, { SWAP: "5:16" }));
    const t = await table(file);
    const ext = t.partitions.find((p) => p.kind === "extended")!;
    const swap = t.partitions.find((p) => p.number === 5)!;
    expect(ext.number).toBe(2);
    expect(swap.type).toBe("82");
    expect(partEnd(swap)).toBe(sectors(file) - 1);
    expect(partEnd(t.partitions.find((p) => p.number === 1)!)).toBeLessThan(ext.startSector);
  });

  test("SWAP=6:16 after a logical root: swap is the next logical partition", async () => {
    const file = await image(64, "label: dos\n,20M,83\n,,5\n,10M,83\n");
    fs.truncateSync(file, 128 * MiB);
    await fixPartitionTable.run(await ctxFor(file, { SWAP: "6:16" }));
    const t = await table(file);
    const l5 = t.partitions.find((p) => p.number === 5)!;
    const l6 = t.partitions.find((p) => p.number === 6)!;
    expect(l6.type).toBe("82");
    expect(partEnd(l6)).toBe(sectors(file) - 1);
    expect(partEnd(l5)).toBeLessThan(l6.startSector);
    expect(l5.sizeSectors).toBeGreaterThan(10 * 2048);
  });

  test("SWAP=3:16 on GPT: Linux swap GUID partition 3 at the end", async () => {
    const file = await image(64, "label: gpt\n,10M,L\n,10M,L\n");
    fs.truncateSync(file, 128 * MiB);
    await fixPartitionTable.run(await ctxFor(file, { SWAP: "3:16" }));
    const t = await table(file);
    const p3 = t.partitions.find((p) => p.number === 3)!;
    expect(p3.type).toBe("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f");
    expect(partEnd(p3)).toBe(t.lastLba!);
    expect(partEnd(t.partitions[1]!)).toBe(p3.startSector - 1);
  });

  test("bad SWAP values and impossible requests are refused", async () => {
    expect(() => parseSwapPartition("2:abc")).toThrow(/bad SWAP property/);
    expect(() => parseSwapPartition("0:10")).toThrow(/bad SWAP property/);
    expect(parseSwapPartition("b")).toBeNull();
    expect(parseSwapPartition("3:512")).toEqual({ number: 3, mib: 512 });
    const file = await image(64, "label: dos\n,20M,83\n");
    // Partition 1 exists already.
    await expect(fixPartitionTable.run(await ctxFor(file, { SWAP: "1:16" }))).rejects.toThrow(/already exists/);
    // 64 MiB disk cannot hold 20 MiB of root growth plus 60 MiB of swap.
    await expect(fixPartitionTable.run(await ctxFor(file, { SWAP: "2:60" }))).rejects.toThrow(/too small/);
  });

  test("planGrow and resizeTarget are pure and agree on the target", () => {
    const t: PartitionTable = {
      table: "msdos",
      sectorSize: 512,
      partitions: [
        { number: 1, dev: "/dev/vda1", startSector: 2048, sizeSectors: 1000, type: "83", kind: "primary" },
        { number: 2, dev: "/dev/vda2", startSector: 4096, sizeSectors: 10000, type: "5", kind: "extended" },
        { number: 5, dev: "/dev/vda5", startSector: 6144, sizeSectors: 5000, type: "83", kind: "logical" },
      ],
    };
    const plan = planGrow(t, 100000);
    expect(plan.target.number).toBe(5);
    expect(plan.changes).toEqual([
      { op: "resize", number: 2, size: 100000 - 4096 },
      { op: "resize", number: 5, size: 100000 - 6144 },
    ]);
    expect(resizeTarget(t.partitions)?.number).toBe(5);
    expect(resizeTarget(t.partitions, 5)?.number).toBe(1);
  });
});

/**
 * Offline NTFS resize (FilesystemResizeAfterUmount, helper/lib/ntfs.ts)
 * against real NTFS volumes in plain files (mkntfs + ntfsresize work on
 * files): grow, already full, dirty volume refused, NOCHECK, opt-out.
 * A volume is made "dirty" the way it happens in real life: ntfsresize
 * itself schedules chkdsk after every real resize.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { run } from "../../helper/lib/exec.ts";
import { NtfsDirtyError, ntfs3gHolders, parseNtfsresizeOutput, readNtfsInfo } from "../../helper/lib/ntfs.ts";
import { task as resizeAfterUmount } from "../../helper/tasks/FilesystemResizeAfterUmount.ts";
import { skipReason } from "../../helper/runner.ts";
import { makeProps } from "../../helper/props.ts";
import { fakeCtx, fakeRoot, type FakeRoot } from "./helper-fixtures.ts";
import type { Partition } from "../../helper/task.ts";

const MiB = 1024 * 1024;
let fr: FakeRoot;
afterEach(() => fr?.cleanup());

async function ntfsFile(mib: number, name = "part.img"): Promise<string> {
  const file = path.join(fr.dir, name);
  fs.writeFileSync(file, "");
  fs.truncateSync(file, mib * MiB);
  await run(["mkntfs", "-F", "-f", "-q", "-L", "snfwin", file]);
  return file;
}

/** A Windows context whose disk has one partition: the given file. */
function ctxWithPartition(file: string, properties: Record<string, string> = {}) {
  const ctx = fakeCtx(fr, { properties, imgFormat: "ntfsdump" }, { family: "windows", distro: "unknown" });
  const part: Partition = { number: 1, dev: file, startSector: 2048, sizeSectors: fs.statSync(file).size / 512, type: "7" };
  ctx.disk = { ...ctx.disk, dev: "/dev/null", partitions: [part] };
  ctx.rootPartition = part;
  return ctx;
}

/** Volume size as ntfsresize sees it (forced: also reads a dirty volume). */
async function volumeBytes(file: string): Promise<number> {
  return (await readNtfsInfo(run, file, "test", { force: true })).volumeBytes;
}

/** Grow once (which leaves the volume scheduled for chkdsk), then enlarge the file again. */
async function dirtyNtfs(): Promise<string> {
  const file = await ntfsFile(32);
  fs.truncateSync(file, 48 * MiB);
  await run(["ntfsresize", "-f", "-P", file]);
  fs.truncateSync(file, 96 * MiB);
  return file;
}

describe("parseNtfsresizeOutput", () => {
  test("reads the sizes from ntfsresize's header", () => {
    const out = [
      "ntfsresize v2022.10.3 (libntfs-3g)",
      "Device name        : /dev/vda1",
      "NTFS volume version: 3.1",
      "Cluster size       : 4096 bytes",
      "Current volume size: 67105280 bytes (68 MB)",
      "Current device size: 167772160 bytes (168 MB)",
      "Checking filesystem consistency ...",
      "Space in use       : 3 MB (3.8%)",
    ].join("\n");
    expect(parseNtfsresizeOutput(out)).toEqual({ version: "3.1", clusterBytes: 4096, volumeBytes: 67105280, deviceBytes: 167772160, usedMB: 3 });
  });

  test("throws when the sizes are missing", () => {
    expect(() => parseNtfsresizeOutput("ntfsresize v2022.10.3 (libntfs-3g)\n")).toThrow(/no "Cluster size"/);
  });
});

describe("FilesystemResizeAfterUmount", () => {
  test("grows a clean NTFS to the size of its (file) partition", async () => {
    fr = fakeRoot();
    const file = await ntfsFile(64);
    expect(await volumeBytes(file)).toBeLessThanOrEqual(64 * MiB);
    fs.truncateSync(file, 160 * MiB);
    const ctx = ctxWithPartition(file);
    await resizeAfterUmount.run(ctx);
    const after = await volumeBytes(file);
    // ntfsresize keeps the volume at least one sector short of the device (backup boot sector)
    expect(after).toBeGreaterThan(160 * MiB - 4096 - 512);
    expect(after).toBeLessThan(160 * MiB);
    expect(ctx.infos.join("\n")).toMatch(new RegExp(`ntfs on part\\.img: NTFS grown \\d+ → ${after} bytes`));
    expect(ctx.warnings).toEqual([]);
    // still a consistent NTFS with its label (and now scheduled for chkdsk, as ntfsresize does)
    const probe = await run(["blkid", "-p", "-o", "value", "-s", "LABEL", file]);
    expect(probe.stdout.trim()).toBe("snfwin");
    await expect(readNtfsInfo(run, file, "ntfs on part.img")).rejects.toBeInstanceOf(NtfsDirtyError);
  });

  test("an NTFS that already fills its partition is left alone (and stays clean)", async () => {
    fr = fakeRoot();
    const file = await ntfsFile(48);
    const before = await volumeBytes(file);
    const ctx = ctxWithPartition(file);
    await resizeAfterUmount.run(ctx);
    expect(await volumeBytes(file)).toBe(before);
    expect(ctx.infos.join("\n")).toContain("NTFS already fills its partition");
    await readNtfsInfo(run, file, "x"); // not dirty: does not throw
  });

  test("refuses an NTFS marked dirty with one line, leaving it untouched", async () => {
    fr = fakeRoot();
    const file = await dirtyNtfs();
    const before = await volumeBytes(file);
    const ctx = ctxWithPartition(file);
    let err: unknown;
    try {
      await resizeAfterUmount.run(ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NtfsDirtyError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^ntfs on part\.img is marked dirty \(scheduled for chkdsk\): .*OFFLINE_NTFSRESIZE_NOCHECK/);
    expect(msg).not.toContain("\n");
    expect(await volumeBytes(file)).toBe(before);
  });

  test("OFFLINE_NTFSRESIZE_NOCHECK resizes a dirty NTFS anyway, with a warning", async () => {
    fr = fakeRoot();
    const file = await dirtyNtfs();
    const ctx = ctxWithPartition(file, { OFFLINE_NTFSRESIZE_NOCHECK: "yes" });
    await resizeAfterUmount.run(ctx);
    expect(await volumeBytes(file)).toBeGreaterThan(96 * MiB - 4096 - 512);
    expect(ctx.warnings.join("\n")).toMatch(/ntfs on part\.img is marked dirty; resizing anyway because OFFLINE_NTFSRESIZE_NOCHECK is set/);
  });

  test("OFFLINE_NTFSRESIZE=no turns it off", async () => {
    fr = fakeRoot();
    const file = await ntfsFile(32);
    const before = await volumeBytes(file);
    fs.truncateSync(file, 64 * MiB);
    const ctx = ctxWithPartition(file, { OFFLINE_NTFSRESIZE: "no" });
    await resizeAfterUmount.run(ctx);
    expect(await volumeBytes(file)).toBe(before);
    expect(ctx.infos.join("\n")).toContain("OFFLINE_NTFSRESIZE is off");
  });

  test("something that is not NTFS is left alone", async () => {
    fr = fakeRoot();
    const file = path.join(fr.dir, "e.img");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 16 * MiB);
    await run(["mkfs.ext4", "-q", "-F", file]);
    const ctx = ctxWithPartition(file);
    await resizeAfterUmount.run(ctx);
    expect(ctx.infos.join("\n")).toMatch(/ext4 on e\.img: not NTFS/);
  });

  test("garbage that claims to be NTFS fails with one line naming ntfsresize's cause", async () => {
    fr = fakeRoot();
    const file = path.join(fr.dir, "junk.img");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 8 * MiB);
    const ctx = ctxWithPartition(file);
    ctx.disk.partitions[0]!.fsType = "ntfs"; // as if blkid had said so
    await expect(resizeAfterUmount.run(ctx)).rejects.toThrow(/^ntfsresize cannot use ntfs on junk\.img: .+/);
  });
});

describe("task table and switches", () => {
  test("runs last, after UmountImage, unmounted; excludable and a filesystem-resize task", async () => {
    const { TASKS } = await import("../../helper/tasks/index.ts");
    const names = TASKS.map((t) => t.name);
    expect(names.at(-1)).toBe("FilesystemResizeAfterUmount");
    expect(names.at(-2)).toBe("UmountImage");
    expect(resizeAfterUmount).toMatchObject({ mounted: false, excludable: true, fsResize: true });
  });

  test("runs by default for windows; skipped by the EXCLUDE switches and on rename", () => {
    const t = resizeAfterUmount;
    expect(skipReason(t, makeProps({}), "create", "windows")).toBeUndefined();
    expect(skipReason(t, makeProps({}), "create", "windows-legacy")).toBeUndefined();
    expect(skipReason(t, makeProps({ EXCLUDE_FILESYSTEMRESIZE_TASKS: "yes" }), "create", "windows")).toBe("EXCLUDE_FILESYSTEMRESIZE_TASKS");
    expect(skipReason(t, makeProps({ exclude_task_filesystemresizeafterumount: "1" }), "create", "windows")).toBe("EXCLUDE_TASK_FilesystemResizeAfterUmount");
    expect(skipReason(t, makeProps({ EXCLUDE_MOUNTED_TASKS: "yes" }), "create", "windows")).toBeUndefined();
    expect(skipReason(t, makeProps({}), "rename", "windows")).toBe("not run on rename");
  });
});

describe("ntfs3gHolders", () => {
  test("finds ntfs-3g processes by the device in their command line", () => {
    fr = fakeRoot();
    const proc = path.join(fr.dir, "proc");
    const mk = (pid: number, argv: string[]) => {
      fs.mkdirSync(path.join(proc, String(pid)), { recursive: true });
      fs.writeFileSync(path.join(proc, String(pid), "cmdline"), argv.join("\0") + "\0");
    };
    mk(10, ["/usr/bin/ntfs-3g", "/dev/vda1", "/mnt/img", "-o", "rw"]);
    mk(11, ["ntfs-3g", "/dev/vda2", "/mnt/other"]);
    mk(12, ["/bin/sh", "-c", "echo /dev/vda1"]);
    mk(13, ["/sbin/mount.ntfs-3g", "/dev/vda1", "/x"]);
    fs.mkdirSync(path.join(proc, "self"));
    expect(ntfs3gHolders("/dev/vda1", proc).sort()).toEqual([10, 13]);
    expect(ntfs3gHolders("/dev/vda3", proc)).toEqual([]);
  });
});

import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { beginSnapshot, dropSnapshot, findSnapshot, snapshotKey, snapshotMaxBytes, sweepSnapshotTemps } from "../../src/vm/snapshot.ts";
import { runTag } from "../../src/leftovers.ts";
import { diskBySerial, waitForDisks } from "../../helper/disk.ts";
import { randomBytes, randomUUID } from "../../helper/lib/random.ts";
import { reseed } from "../../helper/lib/wake.ts";
import { HelperParamsSchema, PROTOCOL_VERSION } from "../../src/protocol.ts";
import * as v from "valibot";

const work = fs.mkdtempSync("/var/tmp/snf-snapshot-unit-");
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function helperFiles(dir: string) {
  fs.mkdirSync(dir, { recursive: true });
  const files = { kernel: path.join(dir, "vmlinux"), initrd: path.join(dir, "initrd.cpio"), tools: path.join(dir, "tools.img") };
  for (const f of Object.values(files)) fs.writeFileSync(f, f);
  return files;
}
const qemu = process.execPath; // any executable file: the key takes its identity, not its behaviour

describe("snapshot key", () => {
  const files = helperFiles(path.join(work, "h1"));
  const base = { qemu, files, accel: "tcg" as const, memoryMiB: 256, debug: false };
  test("stable for the same inputs, different for each thing a saved VM depends on", () => {
    const k = snapshotKey(base);
    expect(k).toMatch(/^[0-9a-f]{32}$/);
    expect(snapshotKey(base)).toBe(k);
    const others = [
      snapshotKey({ ...base, memoryMiB: 512 }),
      snapshotKey({ ...base, accel: "kvm" }),
      snapshotKey({ ...base, debug: true }),
      snapshotKey({ ...base, qemu: "/bin/sh" }),
    ];
    for (const o of others) expect(o).not.toBe(k);
    expect(new Set(others).size).toBe(others.length);
  });
  test("a rebuilt helper file (new inode or mtime) changes the key; a hard link does not", () => {
    const k = snapshotKey(base);
    const linked = path.join(work, "h1-link");
    fs.mkdirSync(linked);
    const lf = { kernel: path.join(linked, "vmlinux"), initrd: path.join(linked, "initrd.cpio"), tools: path.join(linked, "tools.img") };
    for (const n of ["kernel", "initrd", "tools"] as const) fs.linkSync(files[n], lf[n]);
    expect(snapshotKey({ ...base, files: lf })).toBe(k);
    fs.utimesSync(files.tools, new Date(), new Date(Date.now() + 5000));
    expect(snapshotKey(base)).not.toBe(k);
  });
});

describe("snapshot files", () => {
  const dir = path.join(work, "snapshots");
  const key = "a".repeat(32);
  test("nothing saved: a reason, one line", () => {
    const r = findSnapshot(dir, key, 256);
    expect(r).toEqual({ missing: expect.stringMatching(/^no saved helper VM/) });
  });
  test("commit: 0600, renamed into place, other keys' states and dead runs' temporaries removed", () => {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, `${"b".repeat(32)}.state`), "old");
    fs.writeFileSync(path.join(dir, `${"b".repeat(32)}.json`), "{}");
    const dead = path.join(dir, `.tmp-999999-1-${key}.state`);
    fs.writeFileSync(dead, "half");
    const w = beginSnapshot(dir, key);
    expect(fs.existsSync(dead)).toBe(false);
    fs.writeSync(w.fd, Buffer.alloc(4096, 1));
    const s = w.commit("console=ttyS0 x");
    w.abort(); // after commit: a no-op
    expect(s).toEqual({ state: path.join(dir, `${key}.state`), cmdline: "console=ttyS0 x", bytes: 4096 });
    expect(fs.readdirSync(dir).sort()).toEqual([`${key}.json`, `${key}.state`]);
    expect(fs.statSync(s.state).mode & 0o777).toBe(0o600);
    expect(findSnapshot(dir, key, 256)).toEqual(s);
  });
  test("a state that does not fit its description, is too big or not private is not used", () => {
    const state = path.join(dir, `${key}.state`);
    fs.appendFileSync(state, "x");
    expect(findSnapshot(dir, key, 256)).toEqual({ missing: expect.stringContaining("truncated") });
    fs.truncateSync(state, 4096);
    fs.chmodSync(state, 0o644);
    expect(findSnapshot(dir, key, 256)).toEqual({ missing: expect.stringContaining("not private") });
    fs.chmodSync(state, 0o600);
    fs.writeFileSync(path.join(dir, `${key}.json`), JSON.stringify({ cmdline: "x", bytes: snapshotMaxBytes(128) + 1 }));
    fs.truncateSync(state, snapshotMaxBytes(128) + 1);
    expect(findSnapshot(dir, key, 128)).toEqual({ missing: expect.stringContaining("not a state") });
    fs.writeFileSync(path.join(dir, `${key}.json`), "{not json");
    expect(findSnapshot(dir, key, 256)).toEqual({ missing: expect.stringMatching(/^no saved helper VM/) });
    fs.writeFileSync(path.join(dir, `${key}.json`), JSON.stringify({ cmdline: 5, bytes: 1 }));
    expect(findSnapshot(dir, key, 256)).toEqual({ missing: expect.stringContaining("corrupt") });
    dropSnapshot(dir, key);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
  test("the sweep removes a dead run's temporary, never a live run's", () => {
    const dead = path.join(dir, `.tmp-999999-1-${key}.state`);
    const live = path.join(dir, `.tmp-${runTag()}-${key}.state`);
    fs.writeFileSync(dead, "x");
    fs.writeFileSync(live, "x");
    sweepSnapshotTemps(dir);
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    fs.rmSync(live);
    sweepSnapshotTemps(path.join(dir, "missing")); // no directory: nothing to do
  });
  test("abort removes the temporary; an empty state is refused at commit", () => {
    const w = beginSnapshot(dir, key);
    w.abort();
    expect(fs.readdirSync(dir)).toEqual([]);
    const e = beginSnapshot(dir, key);
    expect(() => e.commit("x")).toThrow(/empty state/);
    e.abort();
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe("helper side of a resume", () => {
  test("disks by serial: virtio `serial` files and SCSI VPD page 0x80", async () => {
    const sys = path.join(work, "sysblock");
    fs.mkdirSync(path.join(sys, "vda"), { recursive: true });
    fs.writeFileSync(path.join(sys, "vda", "serial"), "snf-tools\n");
    fs.mkdirSync(path.join(sys, "sda", "device"), { recursive: true });
    const serial = Buffer.from("snf-disk0");
    const pg = Buffer.concat([Buffer.from([0, 0x80, 0, serial.length]), serial]);
    fs.writeFileSync(path.join(sys, "sda", "device", "vpd_pg80"), pg);
    fs.mkdirSync(path.join(sys, "sdb", "device"), { recursive: true });
    // a VPD page that is not 0x80, and one whose length runs past the data: no serial / bounded
    fs.writeFileSync(path.join(sys, "sdb", "device", "vpd_pg80"), Buffer.from([0, 0x83, 0, 4, 65, 66, 67, 68]));
    fs.mkdirSync(path.join(sys, "sdc", "device"), { recursive: true });
    fs.writeFileSync(path.join(sys, "sdc", "device", "vpd_pg80"), Buffer.concat([Buffer.from([0, 0x80, 0xff, 0xff]), Buffer.from("snf-disk2")]));
    expect(diskBySerial("snf-tools", sys)).toBe("/dev/vda");
    expect(diskBySerial("snf-disk0", sys)).toBe("/dev/sda");
    expect(diskBySerial("snf-disk2", sys)).toBe("/dev/sdc");
    expect(diskBySerial("ABCD", sys)).toBeUndefined();
    await waitForDisks(["snf-disk0", "snf-disk2"], sys, 100);
    await expect(waitForDisks(["snf-disk0", "snf-disk1"], sys, 100)).rejects.toThrow(/no disk with serial snf-disk1 appeared/);
  });
  test("random bytes and UUIDs come from the kernel, never repeat", () => {
    const a = randomBytes(32);
    expect(a.length).toBe(32);
    expect(a.equals(randomBytes(32))).toBe(false);
    const u = randomUUID();
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(randomUUID()).not.toBe(u);
  });
  test("reseed: the kernel takes fresh bytes and reseeds (root); too few bytes are refused", () => {
    expect(() => reseed(new Uint8Array(8))).toThrow(/at least 32/);
    expect(() => reseed(new Uint8Array(randomBytes(32)))).not.toThrow();
  });
  test("params.seed is base64 of 32–64 bytes", () => {
    const p = { protocol: PROTOCOL_VERSION, mode: "create", hostname: "h", imgFormat: "diskdump", properties: {}, disks: [{ index: 0, serial: "snf-disk0" }] };
    expect(v.safeParse(HelperParamsSchema, { ...p, seed: randomBytes(32).toString("base64") }).success).toBe(true);
    expect(v.safeParse(HelperParamsSchema, { ...p, seed: randomBytes(8).toString("base64") }).success).toBe(false);
    expect(v.safeParse(HelperParamsSchema, { ...p, seed: "!".repeat(44) }).success).toBe(false);
  });
});

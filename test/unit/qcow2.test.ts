/**
 * qcow2 on the host: files written here from the documented format (see
 * test/lib/qcow2-build.ts) go through the product path (local source →
 * openImage → writeImage onto a file disk). Good ones must equal both the
 * raw disk they describe and what Debian's `qemu-img convert -O raw` makes of
 * them; hostile ones must fail with one line, before anything is written
 * when the header or L1 already tells, and leave no fd open.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { writeImage } from "../../src/disk/writer.ts";
import { ZeroRun } from "../../src/disk/input.ts";
import { openImage } from "../../src/image/format.ts";
import { resolveLocal } from "../../src/image/sources/local.ts";
import { parseHeader, zstdFrameLength } from "../../src/image/qcow2.ts";
import { SnfError } from "../../src/errors.ts";
import type { ImageFormat } from "../../src/protocol.ts";
import { buildQcow2, type Built, type GuestCluster } from "../lib/qcow2-build.ts";

let dir: string;
let n = 0;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-qcow2-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const CS = 4096;
function rnd(len: number): Uint8Array {
  const b = new Uint8Array(len);
  crypto.getRandomValues(b);
  return b;
}
/** Compressible but not trivial. */
function text(len: number, seed: number): Uint8Array {
  const s = Buffer.from(`cluster ${seed} `.repeat(Math.ceil(len / 10)));
  return new Uint8Array(s.subarray(0, len));
}

/** Data, zero, unallocated and compressed clusters across two L2 tables, last cluster partial. */
function sample(version: 2 | 3, compression: "zlib" | "zstd" = "zlib"): Built {
  const clusters = new Map<number, GuestCluster>();
  for (let g = 0; g < 8; g++) clusters.set(g, { kind: "data", bytes: rnd(CS) });
  clusters.set(9, { kind: "zero" });
  for (let g = 10; g < 20; g++) clusters.set(g, { kind: "comp", bytes: text(CS, g) });
  clusters.set(600, { kind: "data", bytes: rnd(CS) }); // second L2 table (512 entries per table)
  clusters.set(601, { kind: "comp", bytes: new Uint8Array(CS) });
  clusters.set(700, { kind: "data", bytes: rnd(CS) }); // partial: the virtual size ends inside it
  return buildQcow2({ version, virtualSize: 700 * CS + 1024, clusters, compression });
}

function place(bytes: Uint8Array): string {
  const name = `img${++n}`;
  fs.writeFileSync(path.join(dir, name), bytes);
  return name;
}

/** Descriptors of this process open on files under the test directory. */
function openFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      const t = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (t.startsWith(dir)) out.push(t);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** The product path onto a disk file that held random data. */
async function deploy(name: string, diskSize = 4 * 1024 * 1024, format: ImageFormat = "qcow2") {
  const disk = path.join(dir, `${name}.disk`);
  fs.writeFileSync(disk, rnd(diskSize));
  const src = await resolveLocal(name, { imageDir: dir, format });
  const opened = await openImage(src, undefined, format);
  const r = await writeImage(opened.stream, disk, { expectedSize: opened.size });
  return { disk, r, opened };
}

function qemuRaw(name: string): Uint8Array {
  const out = path.join(dir, `${name}.ref`);
  const p = Bun.spawnSync(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", path.join(dir, name), out], { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(p.stderr.toString());
  return new Uint8Array(fs.readFileSync(out));
}

/** Expects the image to be refused with one line matching `re`, no fd left. */
async function refused(bytes: Uint8Array, re: RegExp, format: ImageFormat = "qcow2", diskSize = 4 * 1024 * 1024): Promise<string> {
  const name = place(bytes);
  const before = openFds();
  const e = await deploy(name, diskSize, format).then(
    () => null,
    (e) => e,
  );
  expect(e).toBeInstanceOf(SnfError);
  const msg = (e as Error).message;
  expect(msg).not.toContain("\n");
  expect(msg).toMatch(re);
  expect(openFds()).toEqual(before);
  return msg;
}

describe("good images", () => {
  for (const [version, compression] of [[3, "zlib"], [3, "zstd"], [2, "zlib"]] as const) {
    test(`v${version} ${compression}: equals the described disk and qemu-img's conversion, over random old data`, async () => {
      const b = sample(version, compression);
      const name = place(b.file);
      const before = openFds();
      const { disk, r, opened } = await deploy(name);
      expect(opened.qcow2).toMatchObject({ version, compression, clusterSize: CS, virtualSize: b.raw.length });
      expect(r.bytes).toBe(b.raw.length);
      const got = new Uint8Array(fs.readFileSync(disk)).subarray(0, b.raw.length);
      expect(Buffer.compare(got, b.raw)).toBe(0);
      expect(Buffer.compare(got, qemuRaw(name))).toBe(0);
      expect(openFds()).toEqual(before);
    });
  }

  test("an odd virtual size is cut to whole sectors, as qemu-img does", async () => {
    const clusters = new Map<number, GuestCluster>([[0, { kind: "data", bytes: rnd(CS) }], [3, { kind: "data", bytes: rnd(CS) }]]);
    const b = buildQcow2({ virtualSize: 3 * CS + 1000, clusters });
    const name = place(b.file);
    const { disk, r } = await deploy(name);
    const ref = qemuRaw(name);
    expect(r.bytes).toBe(ref.length);
    expect(ref.length).toBe(3 * CS + 512);
    expect(Buffer.compare(new Uint8Array(fs.readFileSync(disk)).subarray(0, ref.length), ref)).toBe(0);
  });

  test("zero and unallocated clusters arrive as ZeroRuns, not as zero bytes", async () => {
    const clusters = new Map<number, GuestCluster>([[1, { kind: "data", bytes: rnd(CS) }], [3, { kind: "zero" }]]);
    const b = buildQcow2({ virtualSize: 1024 * 1024 * 1024, clusters, clusterBits: 16 });
    const src = await resolveLocal(place(b.file), { imageDir: dir, format: "qcow2" });
    const { stream } = await openImage(src);
    let bytes = 0;
    let zeros = 0;
    for await (const c of stream as unknown as AsyncIterable<Uint8Array | ZeroRun>) {
      if (c instanceof ZeroRun) zeros += c.bytes;
      else bytes += c.length;
    }
    expect(bytes).toBe(65536);
    expect(zeros).toBe(1024 * 1024 * 1024 - 65536);
  });

  test("a dirty image (lazy refcounts) is read: refcounts play no part in reading", async () => {
    const b = sample(3);
    new DataView(b.file.buffer).setUint32(76, 1); // incompatible bit 0: dirty
    new DataView(b.file.buffer).setUint32(84, 1); // compatible bit 0: lazy refcounts
    const { disk, opened } = await deploy(place(b.file));
    expect(opened.qcow2?.dirty).toBe(true);
    expect(Buffer.compare(new Uint8Array(fs.readFileSync(disk)).subarray(0, b.raw.length), b.raw)).toBe(0);
  });

  test("a qcow2 named diskdump is still converted (by its magic)", async () => {
    const b = sample(3);
    const { disk, opened } = await deploy(place(b.file), 4 * 1024 * 1024, "diskdump");
    expect(opened.qcow2).not.toBeNull();
    expect(Buffer.compare(new Uint8Array(fs.readFileSync(disk)).subarray(0, b.raw.length), b.raw)).toBe(0);
  });

  test("zstd frame length: the frame ends where it ends, bombs are refused", () => {
    const f = Bun.zstdCompressSync(text(CS, 1));
    const padded = new Uint8Array(f.length + 300);
    padded.set(f);
    padded.fill(0xaa, f.length);
    expect(zstdFrameLength(padded, CS)).toBe(f.length);
    const big = Bun.zstdCompressSync(new Uint8Array(1024 * 1024));
    expect(() => zstdFrameLength(big, CS)).toThrow(/declares|more than/);
  });
});

test("interrupted half way (SIGTERM's abort): one line, the image closed", async () => {
  const clusters = new Map<number, GuestCluster>();
  for (let g = 0; g < 4096; g++) clusters.set(g, { kind: g % 2 ? "comp" : "data", bytes: g % 2 ? text(CS, g) : rnd(CS) });
  const b = buildQcow2({ virtualSize: 4096 * CS, clusters });
  const name = place(b.file);
  const before = openFds();
  const disk = path.join(dir, `${name}.disk`);
  fs.writeFileSync(disk, new Uint8Array(0));
  fs.truncateSync(disk, 32 * 1024 * 1024);
  const src = await resolveLocal(name, { imageDir: dir, format: "qcow2" });
  const opened = await openImage(src, undefined, "qcow2");
  const ctl = new AbortController();
  let pulled = 0;
  // Abort once the copy is under way: after the first chunk reached the writer.
  const counted = opened.stream.pipeThrough(
    new TransformStream({
      transform(c, out) {
        if (++pulled === 3) ctl.abort(new Error("SIGTERM"));
        out.enqueue(c);
      },
    }),
  );
  const e = await writeImage(counted, disk, { expectedSize: opened.size, signal: ctl.signal }).catch((e) => e);
  expect(e).toBeInstanceOf(SnfError);
  expect(e.message).toMatch(/^image copy interrupted: SIGTERM$/);
  await Bun.sleep(50);
  expect(openFds()).toEqual(before);
});

describe("hostile images: one line, nothing left", () => {
  const set = (b: Built, off: number, v: number | bigint, bits: 32 | 64 = 64) => {
    const dv = new DataView(b.file.buffer);
    if (bits === 32) dv.setUint32(off, Number(v));
    else dv.setBigUint64(off, BigInt(v));
    return b.file;
  };

  test("backing file (its name could point anywhere on the node)", async () => {
    const b = sample(3);
    b.file.set(new TextEncoder().encode("/etc/shadow"), 512);
    set(b, 8, 512);
    set(b, 16, 11, 32);
    const msg = await refused(b.file, /backing file/);
    expect(msg).not.toContain("shadow");
  });
  test("encryption: crypt_method AES, LUKS, and an encryption header extension", async () => {
    for (const m of [1, 2]) await refused(set(sample(3), 32, m, 32), /encrypted/);
    const b = sample(3);
    set(b, 104, 0x0537be77, 32);
    set(b, 108, 16, 32);
    await refused(b.file, /encryption header/);
  });
  test("external data file: feature bit, name extension", async () => {
    await refused(set(sample(3), 72, 4), /external data file/);
    const b = sample(3);
    set(b, 104, 0x44415441, 32);
    set(b, 108, 8, 32);
    await refused(b.file, /external data file/);
  });
  test("unknown incompatible features, the corrupt bit, versions, cluster_bits", async () => {
    await refused(set(sample(3), 72, 1n << 40n), /unknown incompatible feature bit\(s\) 40/);
    await refused(set(sample(3), 72, 32), /unknown incompatible feature bit\(s\) 5/);
    await refused(set(sample(3), 72, 2), /marked corrupt/);
    await refused(set(sample(3), 4, 4, 32), /version 4/);
    await refused(set(sample(3), 20, 30, 32), /cluster_bits 30/);
    await refused(set(sample(3), 20, 8, 32), /cluster_bits 8/);
  });
  test("huge L1 size, L1 too small, L1 past the end of the file", async () => {
    await refused(set(sample(3), 36, 0xffffffff, 32), /larger than 32 MiB/);
    await refused(set(sample(3), 36, 1, 32), /too small/);
    await refused(set(sample(3), 40, 1n << 40n), /past the end/);
    await refused(set(sample(3), 24, 1n << 62n), /virtual size|too small/);
  });
  test("overlapping tables: L1 on the header, an L2 table on the L1 table, two L1 entries on one L2 table", async () => {
    await refused(set(sample(3), 40, 0), /L1 table offset 0x0 is not cluster-aligned|overlaps/);
    let b = sample(3);
    set(b, b.l1Offset, BigInt(b.l1Offset));
    await refused(b.file, /L2 table .* overlaps other metadata/);
    b = sample(3);
    set(b, b.l1Offset + 8, BigInt(b.l2.get(0)!));
    await refused(b.file, /L2 table .* overlaps other metadata/);
    b = sample(3);
    set(b, b.l1Offset, BigInt(b.refcountTableOffset));
    await refused(b.file, /overlaps other metadata/);
  });
  test("data clusters: past the end of the file, mapped twice, on a table, unaligned", async () => {
    let b = sample(3);
    set(b, b.l2Entry.get(1)!, BigInt(Math.ceil(b.file.length / CS) * CS + CS) | (1n << 63n));
    await refused(b.file, /data cluster at .* past the end/);
    b = sample(3);
    set(b, b.l2Entry.get(1)!, BigInt(b.data.get(0)!) | (1n << 63n));
    await refused(b.file, /overlaps metadata or another cluster/);
    b = sample(3);
    set(b, b.l2Entry.get(1)!, BigInt(b.l2.get(0)!));
    await refused(b.file, /overlaps metadata or another cluster/);
    b = sample(3);
    set(b, b.l2Entry.get(1)!, BigInt(b.data.get(0)! + 512));
    await refused(b.file, /not cluster-aligned/);
  });
  test("compressed clusters: length past the end of the file, offset in the header, garbage", async () => {
    const shift = 62n - (12n - 8n);
    let b = sample(3);
    const e = new DataView(b.file.buffer).getBigUint64(b.l2Entry.get(12)!);
    set(b, b.l2Entry.get(12)!, e | (0xffn << shift)); // 255 extra sectors
    await refused(b.file, /compressed cluster .* outside the/);
    b = sample(3);
    set(b, b.l2Entry.get(12)!, (1n << 62n) | 100n);
    await refused(b.file, /compressed cluster at 0x64 .* outside/);
    b = sample(3);
    const off = Number(new DataView(b.file.buffer).getBigUint64(b.l2Entry.get(12)!) & ((1n << shift) - 1n));
    b.file.fill(0xff, off, off + 64);
    await refused(b.file, /compressed cluster at .* does not decompress|decompresses to/);
  });
  test("extended L2 entries: subclusters both allocated and zero", async () => {
    // A 16 KiB-cluster image with extended L2 made by hand: one entry, one bad bitmap.
    const cs = 16384;
    const file = new Uint8Array(6 * cs);
    const dv = new DataView(file.buffer);
    file.set([0x51, 0x46, 0x49, 0xfb]);
    dv.setUint32(4, 3);
    dv.setUint32(20, 14);
    dv.setBigUint64(24, BigInt(cs));
    dv.setUint32(36, 1);
    dv.setBigUint64(40, BigInt(cs));
    dv.setBigUint64(72, 16n);
    dv.setUint32(96, 4);
    dv.setUint32(100, 104);
    dv.setBigUint64(48, BigInt(4 * cs)); // refcount table → block at 5: every cluster once
    dv.setUint32(56, 1);
    dv.setBigUint64(4 * cs, BigInt(5 * cs));
    for (let c = 0; c < 6; c++) dv.setUint16(5 * cs + 2 * c, 1);
    dv.setBigUint64(cs, BigInt(2 * cs));
    dv.setBigUint64(2 * cs, BigInt(3 * cs) | (1n << 63n));
    dv.setUint32(2 * cs + 8, 1); // zero bit of subcluster 0
    dv.setUint32(2 * cs + 12, 1); // allocated bit of subcluster 0
    await refused(file, /both allocated and zero/);
    dv.setUint32(2 * cs + 8, 0);
    file.fill(0x5a, 3 * cs, 4 * cs);
    const name = place(file);
    const { disk } = await deploy(name);
    const got = new Uint8Array(fs.readFileSync(disk)).subarray(0, cs);
    expect(got.subarray(0, cs / 32).every((x) => x === 0x5a)).toBe(true); // subcluster 0 allocated
    expect(got.subarray(cs / 32).every((x) => x === 0)).toBe(true); // the others unallocated
    expect(Buffer.compare(got, qemuRaw(name))).toBe(0);
  });
  test("truncated header, not qcow2 for img_format=qcow2, qcow2 inside gzip", async () => {
    await refused(sample(3).file.subarray(0, 40), /not a qcow2 file|raw \(no qcow2 magic\)/);
    await refused(rnd(8192), /not qcow2 as img_format=qcow2 says/);
    await refused(new Uint8Array(zlib.gzipSync(sample(3).file)), /qcow2 file inside gzip compression/, "diskdump");
  });
  test("an image larger than the disk is refused before writing", async () => {
    await refused(sample(3).file, /does not fit/, "qcow2", 2 * 1024 * 1024);
  });
  test("parseHeader alone: v3 header_length out of range", () => {
    const b = sample(3);
    set(b, 100, 4096 * 2, 32);
    expect(() => parseHeader(b.file, b.file.length, "x")).toThrow(/header_length/);
  });
});

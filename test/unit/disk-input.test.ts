/**
 * The local-file fast path: resolveLocal → openImage → writeImage reads the
 * file with positional reads into the writer's buffers. Same bytes as dd,
 * fd closed afterwards, and compressed local files are fed to the
 * decompressor as its stdin fd.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeImage, type WriteOptions } from "../../src/disk/writer.ts";
import { fileBacking, markFileBacked } from "../../src/disk/input.ts";
import { FileExtents } from "../../src/disk/extents.ts";
import { resolveLocal } from "../../src/image/sources/local.ts";
import { openImage } from "../../src/image/format.ts";
import { SnfError } from "../../src/errors.ts";

const MiB = 1024 * 1024;
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-input-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}

function sparse(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o + 4096 <= n; o += 4096) if ((o / 4096) % 9 === 0) b.set(random(4096), o);
  for (let o = 3 * MiB; o < 3 * MiB + 200 * 1024; o += 4096) b.set(random(4096), o);
  b[n - 1] = 7;
  return b;
}

/** Whether some fd of this process still has `file` open. */
function isOpen(file: string): boolean {
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) return true;
    } catch {
      /* closed meanwhile */
    }
  }
  return false;
}

/** Writes `image` as a local image and a disk of random old data; returns [imgName, disk, expected disk bytes]. */
function setup(name: string, image: Uint8Array, diskSize: number, prefix?: Uint8Array): [string, string, Uint8Array] {
  fs.writeFileSync(path.join(dir, name), image);
  const old = random(diskSize);
  const disk = path.join(dir, `${name}.disk`);
  fs.writeFileSync(disk, old);
  const want = old.slice();
  const pl = prefix?.length ?? 0;
  if (prefix) want.set(prefix, 0);
  if (pl + image.length <= diskSize) want.set(image, pl);
  return [name, disk, want];
}

async function copyLocal(name: string, disk: string, o: Omit<WriteOptions, "expectedSize"> = {}) {
  const src = await resolveLocal(name, { imageDir: dir, format: "diskdump" });
  const opened = await openImage(src, o.signal);
  const fast = fileBacking(opened.stream) !== null;
  return { opened, fast, r: writeImage(opened.stream, disk, { ...o, expectedSize: opened.size }) };
}

describe("local file fast path", () => {
  for (const [label, make, diskSize] of [
    ["dense, chunk multiple", () => random(12 * MiB), 16 * MiB],
    ["mostly zero, unaligned size", () => sparse(9 * MiB + 1234), 12 * MiB],
    ["exactly the disk size", () => random(8 * MiB), 8 * MiB],
    ["tiny", () => random(100), MiB],
  ] as const) {
    test(label, async () => {
      const [name, disk, want] = setup(label.replace(/\W+/g, "-"), make(), diskSize);
      const { opened, fast, r } = await copyLocal(name, disk);
      expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(true);
      expect(opened.compression).toBeNull();
      expect(fast).toBe(true);
      const res = await r;
      expect(res.bytes).toBe(want.length - (diskSize - (opened.size ?? 0)));
      expect(Buffer.compare(fs.readFileSync(disk), want)).toBe(0);
      expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(false);
    });
  }

  test("with a 1 MiB prefix", async () => {
    const prefix = random(MiB);
    const [name, disk, want] = setup("prefixed", sparse(6 * MiB + 512), 10 * MiB, prefix);
    const { r } = await copyLocal(name, disk, { prefix });
    expect((await r).bytes).toBe(7 * MiB + 512);
    expect(Buffer.compare(fs.readFileSync(disk), want)).toBe(0);
  });

  test("too large: refused, nothing written, fd closed", async () => {
    const [name, disk] = setup("big", random(5 * MiB), 4 * MiB);
    const old = fs.readFileSync(disk);
    const { r } = await copyLocal(name, disk);
    expect(r).rejects.toThrow(SnfError);
    await r.catch(() => {});
    expect(Buffer.compare(fs.readFileSync(disk), old)).toBe(0);
    expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(false);
  });

  test("abort stops the copy with one SnfError and closes the fd", async () => {
    const [name, disk] = setup("abort", random(32 * MiB), 40 * MiB);
    const ac = new AbortController();
    ac.abort(new Error("stop"));
    const { r } = await copyLocal(name, disk, { signal: ac.signal });
    expect(r).rejects.toThrow(/interrupted/);
    await r.catch(() => {});
    expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(false);
  });

  test("reading the stream normally still works (slow path)", async () => {
    const img = random(3 * MiB + 5);
    fs.writeFileSync(path.join(dir, "plain"), img);
    const src = await resolveLocal("plain", { imageDir: dir, format: "diskdump" });
    const got = new Uint8Array(await new Response(await src.open()).arrayBuffer());
    expect(Buffer.compare(got, img)).toBe(0);
  });

  test("compressed local file: decompressor reads the fd, same bytes", async () => {
    const raw = sparse(5 * MiB + 77);
    const rawPath = path.join(dir, "z.raw");
    fs.writeFileSync(rawPath, raw);
    const p = Bun.spawn(["zstd", "-q", "-f", rawPath, "-o", path.join(dir, "z.img")]);
    expect(await p.exited).toBe(0);
    const disk = path.join(dir, "z.disk");
    fs.writeFileSync(disk, random(8 * MiB));
    const want = fs.readFileSync(disk);
    want.set(raw, 0);
    const name = "z.img";
    const { opened, r } = await copyLocal(name, disk);
    expect(opened.compression).toBe("zstd");
    expect((await r).bytes).toBe(raw.length);
    expect(Buffer.compare(fs.readFileSync(disk), want)).toBe(0);
    expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(false);
  });
});

/**
 * A sparse local image: the writer asks the filesystem where the data is
 * (lseek SEEK_DATA/SEEK_HOLE) and never reads the holes. Real files in
 * os.tmpdir() (ext4 or tmpfs here: both report holes).
 */
describe("sparse local file: holes zeroed without being read", () => {
  /** A file of `size` bytes with random data at `at` ([offset, length]) and holes elsewhere; returns its bytes. */
  function sparseFile(name: string, size: number, at: [number, number][]): Uint8Array {
    const want = new Uint8Array(size);
    const f = path.join(dir, name);
    const fd = fs.openSync(f, "w");
    fs.ftruncateSync(fd, size);
    for (const [off, len] of at) {
      const b = random(len);
      want.set(b, off);
      fs.writeSync(fd, b, 0, len, off);
    }
    fs.closeSync(fd);
    return want;
  }
  const allocated = (name: string) => fs.statSync(path.join(dir, name)).blocks * 512;
  /** Bytes this process has read through read(2)/pread(2) so far (every thread). */
  const readSoFar = () => Number(/^rchar: (\d+)$/m.exec(fs.readFileSync("/proc/self/io", "utf8"))![1]);
  const oldDisk = (name: string, size: number) => {
    const disk = path.join(dir, `${name}.disk`);
    const old = random(size);
    fs.writeFileSync(disk, old);
    return { disk, old };
  };

  test("FileExtents: holes at the start and the end, data at odd offsets, short holes read with the data", () => {
    const size = 40 * MiB;
    sparseFile("ext", size, [
      [5 * MiB + 12345, 100_000],
      [5 * MiB + 12345 + 100_000 + 64 * 1024, 3000], // a 64 KiB gap: read with the data
      [20 * MiB + 1, 2 * MiB],
    ]);
    expect(allocated("ext")).toBeLessThan(8 * MiB);
    const fd = fs.openSync(path.join(dir, "ext"), "r");
    try {
      const x = new FileExtents(fd, size);
      const got: [boolean, number, number][] = [];
      for (let pos = 0; pos < size; ) {
        const e = x.at(pos)!;
        expect(e).not.toBeNull();
        expect(e.end).toBeGreaterThan(pos);
        got.push([e.data, pos, e.end]);
        pos = e.end;
      }
      // Block-granular (4 KiB on ext4 and tmpfs): data extents cover every data byte, holes none.
      expect(got.map((g) => g[0])).toEqual([false, true, false, true, false]);
      const [, d1, h1] = got[1]!;
      expect(d1).toBeLessThanOrEqual(5 * MiB + 12345);
      expect(h1).toBeGreaterThanOrEqual(5 * MiB + 12345 + 100_000 + 64 * 1024 + 3000);
      const [, d2, h2] = got[3]!;
      expect(d2).toBeLessThanOrEqual(20 * MiB + 1);
      expect(h2).toBeGreaterThanOrEqual(22 * MiB + 1);
      expect(got.at(-1)![2]).toBe(size);
    } finally {
      fs.closeSync(fd);
    }
  });

  test("FileExtents: where short holes crowd, a 64 MiB window is read whole instead of mapped hole by hole", async () => {
    const size = 100 * MiB;
    // 4 KiB of data every 8 KiB over the first 2 MiB (256 short holes), a long hole, data at 90 MiB.
    const at: [number, number][] = [];
    for (let o = 0; o < 2 * MiB; o += 8192) at.push([o, 4096]);
    at.push([90 * MiB, 5000]);
    const want = sparseFile("crowded", size, at);
    const fd = fs.openSync(path.join(dir, "crowded"), "r");
    try {
      const x = new FileExtents(fd, size);
      expect(x.at(0)).toEqual({ data: true, end: 64 * MiB });
      expect(x.at(64 * MiB)).toEqual({ data: false, end: 90 * MiB });
      expect(x.at(90 * MiB)!.data).toBe(true);
    } finally {
      fs.closeSync(fd);
    }
    const { disk } = oldDisk("crowded", size);
    const { r } = await copyLocal("crowded", disk);
    expect((await r).bytes).toBe(size);
    expect(Buffer.compare(fs.readFileSync(disk), want)).toBe(0);
  });

  test("FileExtents: a file with no holes is one data extent", () => {
    fs.writeFileSync(path.join(dir, "full"), random(3 * MiB + 7));
    const fd = fs.openSync(path.join(dir, "full"), "r");
    try {
      expect(new FileExtents(fd, 3 * MiB + 7).at(0)).toEqual({ data: true, end: 3 * MiB + 7 });
    } finally {
      fs.closeSync(fd);
    }
  });

  test("a filesystem that cannot tell (procfs: lseek SEEK_DATA is EINVAL): FileExtents says so and the writer reads the file", async () => {
    const want = fs.readFileSync("/proc/version");
    expect(want.length).toBeGreaterThan(0);
    const fd = fs.openSync("/proc/version", "r");
    expect(new FileExtents(fd, want.length).at(0)).toBeNull();
    let closed = false;
    const stream = markFileBacked(new ReadableStream<Uint8Array>({ cancel: () => void ((closed = true), fs.closeSync(fd)) }), { fd, size: want.length });
    const { disk, old } = oldDisk("procfs", MiB);
    const r = await writeImage(stream, disk, { expectedSize: want.length });
    expect(r.bytes).toBe(want.length);
    expect(closed).toBe(true);
    const after = fs.readFileSync(disk);
    expect(Buffer.compare(after.subarray(0, want.length), want)).toBe(0);
    expect(Buffer.compare(after.subarray(want.length), old.subarray(want.length))).toBe(0);
  });

  test("data at odd offsets, holes at the start and the end: byte-identical over old data, holes not read, hashed as zeros", async () => {
    const size = 64 * MiB + 4096;
    const want = sparseFile("holes", size, [
      [3 * MiB + 333, 5000],
      [17 * MiB - 1, 2], // across a 4 KiB block and a 1 MiB boundary
      [30 * MiB + 4096, 9 * MiB + 17], // across 4 MiB chunks, unaligned end
    ]);
    expect(allocated("holes")).toBeLessThan(12 * MiB);
    const { disk, old } = oldDisk("holes", 72 * MiB);
    const src = await resolveLocal("holes", { imageDir: dir, format: "diskdump" });
    const opened = await openImage(src);
    const file = fileBacking(opened.stream)!;
    expect(file).not.toBeNull();
    // As IMAGE_VERIFY does (src/image/verify.ts): the writer's fast path feeds every byte to the tap.
    const hasher = new Bun.CryptoHasher("sha256");
    let hashed = 0;
    markFileBacked(opened.stream as ReadableStream<Uint8Array>, {
      ...file,
      tap: (b) => {
        hasher.update(b);
        hashed += b.length;
      },
    });
    const seen: number[] = [];
    const before = readSoFar();
    const r = await writeImage(opened.stream, disk, { expectedSize: opened.size, onProgress: (p) => seen.push(p), progressEveryMs: 0 });
    const read = readSoFar() - before;
    expect(r.bytes).toBe(size);
    expect(read).toBeLessThan(16 * MiB); // 9 MiB of data and the blocks around it, not 64 MiB
    expect(r.zeroBytes).toBeGreaterThan(40 * MiB);
    const after = fs.readFileSync(disk);
    expect(Buffer.compare(after.subarray(0, size), want)).toBe(0);
    expect(Buffer.compare(after.subarray(size), old.subarray(size))).toBe(0);
    expect(hashed).toBe(size);
    expect(hasher.digest("hex")).toBe(new Bun.CryptoHasher("sha256").update(want).digest("hex"));
    expect(seen.at(-1)).toBe(size);
    expect(seen.every((p, i) => i === 0 || p >= seen[i - 1]!)).toBe(true);
    expect(isOpen(fs.realpathSync(path.join(dir, "holes")))).toBe(false);
  });

  test("with a 1 MiB prefix and ZERO_DISK_TAIL=cheap", async () => {
    const size = 12 * MiB + 100;
    const want = sparseFile("holes-prefix", size, [[6 * MiB + 5, 70_000]]);
    const prefix = random(MiB);
    const { disk } = oldDisk("holes-prefix", 20 * MiB);
    const { r } = await copyLocal("holes-prefix", disk, { prefix, zeroTail: "cheap" });
    const res = await r;
    expect(res.bytes).toBe(MiB + size);
    expect(res.tail.method).toBe("punch");
    const after = fs.readFileSync(disk);
    expect(Buffer.compare(after.subarray(0, MiB), prefix)).toBe(0);
    expect(Buffer.compare(after.subarray(MiB, MiB + size), want)).toBe(0);
    expect(after.subarray(MiB + size).every((x) => x === 0)).toBe(true);
  });

  test("a file that is all hole: zeros over old data, nothing read; a 0-byte file is still refused as empty", async () => {
    const size = 24 * MiB;
    sparseFile("allhole", size, []);
    expect(allocated("allhole")).toBe(0);
    const { disk, old } = oldDisk("allhole", 32 * MiB);
    const before = readSoFar();
    const { r } = await copyLocal("allhole", disk);
    const res = await r;
    expect(readSoFar() - before).toBeLessThan(MiB); // the 6-byte sniff, not 24 MiB
    expect(res.zeroBytes).toBe(size);
    const after = fs.readFileSync(disk);
    expect(after.subarray(0, size).every((x) => x === 0)).toBe(true);
    expect(Buffer.compare(after.subarray(size), old.subarray(size))).toBe(0);

    fs.writeFileSync(path.join(dir, "empty"), "");
    const { disk: d2, old: old2 } = oldDisk("empty", MiB);
    const src = await resolveLocal("empty", { imageDir: dir, format: "diskdump" });
    expect(openImage(src)).rejects.toThrow(/is empty/);
    await openImage(src).catch(() => {});
    expect(Buffer.compare(fs.readFileSync(d2), old2)).toBe(0);
  });

  test("a file that shrinks or grows while it is copied is an error", async () => {
    for (const [name, change, why] of [
      ["shrunk-hole", (f: string) => fs.truncateSync(f, 8 * MiB), /shrank from 33554432 to 8388608 bytes/], // only holes cut off: noticed by the size
      ["shrunk-data", (f: string) => fs.truncateSync(f, 2 * MiB), /shrank from 33554432 to 2097152 bytes/], // into the data (a shrink between lseek and read comes up short: writeImage's "ended after")
      ["grown", (f: string) => fs.appendFileSync(f, random(5000)), /grew past its 33554432 bytes/],
    ] as const) {
      sparseFile(name, 32 * MiB, [[MiB, 3 * MiB]]);
      const { disk } = oldDisk(name, 40 * MiB);
      const src = await resolveLocal(name, { imageDir: dir, format: "diskdump" });
      const opened = await openImage(src);
      change(path.join(dir, name));
      const e = await writeImage(opened.stream, disk, { expectedSize: opened.size }).catch((e) => e);
      expect(e).toBeInstanceOf(SnfError);
      expect(e.message).toMatch(why);
      expect(isOpen(fs.realpathSync(path.join(dir, name)))).toBe(false);
    }
  });

  test("abort during a long hole stops the copy with one SnfError and closes the fd", async () => {
    const size = 3 * 1024 * MiB;
    sparseFile("bighole", size, [[0, 4096]]);
    const disk = path.join(dir, "bighole.disk");
    fs.writeFileSync(disk, "");
    fs.truncateSync(disk, size);
    const ac = new AbortController();
    const seen: number[] = [];
    const { r } = await copyLocal("bighole", disk, {
      signal: ac.signal,
      progressEveryMs: 0,
      onProgress: (p) => {
        seen.push(p);
        ac.abort(new Error("SIGTERM"));
      },
    });
    const e = await r.catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/interrupted/);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.at(-1)!).toBeLessThan(size);
    expect(isOpen(fs.realpathSync(path.join(dir, "bighole")))).toBe(false);
  });
});

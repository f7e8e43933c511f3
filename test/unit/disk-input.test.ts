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
import { writeImage } from "../../src/disk/writer.ts";
import { fileBacking } from "../../src/disk/input.ts";
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

async function copyLocal(name: string, disk: string, o: { prefix?: Uint8Array; signal?: AbortSignal } = {}) {
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

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeImage } from "../../src/disk/writer.ts";
import { openTarget } from "../../src/disk/target.ts";
import { SnfError } from "../../src/errors.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-writer-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const MiB = 1024 * 1024;

function random(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, Math.min(n, o + 65536)));
  return b;
}

/** Mostly zeros: scattered 4 KiB data blocks, a few short zero gaps, big zero runs. */
function sparse(n: number): Uint8Array {
  const b = new Uint8Array(n);
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let o = 0; o + 4096 <= n; o += 4096) {
    if (rnd() < 0.12) b.set(random(4096), o);
  }
  b[n - 1] = 1;
  b[1234567] = 9; // a single non-zero byte in a block
  return b;
}

function chunked(data: Uint8Array, sizes = [1, 4095, 65536, 333333, 7 * MiB]): ReadableStream<Uint8Array> {
  let off = 0;
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (off >= data.length) return c.close();
      const n = Math.min(sizes[i++ % sizes.length]!, data.length - off);
      c.enqueue(data.slice(off, off + n));
      off += n;
    },
  });
}

async function dd(img: string, disk: string, seek = 0) {
  const p = Bun.spawn(["dd", `if=${img}`, `of=${disk}`, "bs=1M", "conv=notrunc", "status=none", ...(seek ? [`seek=${seek}`, "oflag=seek_bytes"] : [])]);
  expect(await p.exited).toBe(0);
}

/** A disk file filled with random old data; a copy for dd and one for us. */
function disks(name: string, size: number): [string, string] {
  const old = random(size);
  const a = path.join(dir, `${name}.dd`);
  const b = path.join(dir, `${name}.ours`);
  fs.writeFileSync(a, old);
  fs.writeFileSync(b, old);
  return [a, b];
}

async function same(a: string, b: string) {
  const p = Bun.spawn(["cmp", a, b], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  expect(out).toBe("");
  expect(await p.exited).toBe(0);
}

async function check(name: string, image: Uint8Array, diskSize: number, prefix?: Uint8Array) {
  const img = path.join(dir, `${name}.img`);
  await Bun.write(img, image);
  const [ddDisk, ours] = disks(name, diskSize);
  if (prefix) {
    const pf = path.join(dir, `${name}.prefix`);
    await Bun.write(pf, prefix);
    await dd(pf, ddDisk);
    await dd(img, ddDisk, prefix.length);
  } else await dd(img, ddDisk);
  const seen: [number, number | null][] = [];
  const r = await writeImage(chunked(image), ours, {
    prefix,
    expectedSize: image.length,
    onProgress: (p, t) => seen.push([p, t]),
  });
  const total = image.length + (prefix?.length ?? 0);
  expect(r.bytes).toBe(total);
  expect(seen.at(-1)).toEqual([total, total]);
  expect(fs.statSync(ours).size).toBe(diskSize);
  await same(ddDisk, ours);
  return r;
}

describe("writeImage on a regular file", () => {
  test("dense image over random old data", async () => {
    const r = await check("dense", random(9 * MiB), 12 * MiB);
    expect(r.zeroBytes).toBe(0);
  });
  test("mostly-zero image: zero runs are zeroed, not written, and identical to dd", async () => {
    const r = await check("sparse", sparse(20 * MiB), 24 * MiB);
    expect(r.zeroBytes).toBeGreaterThan(4 * MiB);
  });
  test("all-zero image leaves the disk file sparse", async () => {
    const r = await check("zeros", new Uint8Array(16 * MiB), 16 * MiB);
    expect(r.zeroBytes).toBe(16 * MiB);
    const st = fs.statSync(path.join(dir, "zeros.ours"));
    expect(st.blocks * 512).toBeLessThan(1 * MiB);
  });
  test("unaligned size", async () => {
    const img = sparse(5 * MiB + 12345);
    img.set(random(100), img.length - 100);
    await check("unaligned", img, 8 * MiB);
  });
  test("with a 1 MiB prefix", async () => {
    const prefix = random(MiB);
    await check("prefix", sparse(6 * MiB + 513), 8 * MiB, prefix);
  });
  test("image exactly the disk size", async () => {
    await check("exact", sparse(8 * MiB), 8 * MiB);
  });
  test("unknown size works too", async () => {
    const image = sparse(3 * MiB + 1);
    const img = path.join(dir, "unknown.img");
    await Bun.write(img, image);
    const [ddDisk, ours] = disks("unknown", 4 * MiB);
    await dd(img, ddDisk);
    const r = await writeImage(chunked(image), ours, { expectedSize: null });
    expect(r.bytes).toBe(image.length);
    await same(ddDisk, ours);
  });
});

describe("ZERO_DISK_TAIL: the disk past the image", () => {
  const OLD = new TextEncoder().encode("OLD-TENANT");
  const count = (b: Uint8Array) => Buffer.from(b).toString("latin1").split("OLD-TENANT").length - 1;
  const oldDisk = (name: string, size: number) => {
    const f = path.join(dir, name);
    const b = new Uint8Array(size);
    for (let o = 0; o + OLD.length <= size; o += 4096) b.set(OLD, o);
    fs.writeFileSync(f, b);
    return f;
  };
  test("cheap on a file disk: punched to zeroes (unaligned image end included), image intact", async () => {
    const f = oldDisk("tail-cheap", 8 * MiB);
    const image = random(MiB + 1000);
    const r = await writeImage(chunked(image), f, { expectedSize: image.length, zeroTail: "cheap" });
    expect(r.tail).toMatchObject({ bytes: 8 * MiB - image.length, method: "punch" });
    const after = fs.readFileSync(f);
    expect(Buffer.compare(after.subarray(0, image.length), Buffer.from(image))).toBe(0);
    expect(after.subarray(image.length).every((x) => x === 0)).toBe(true);
    expect(fs.statSync(f).size).toBe(8 * MiB);
  });
  test("no: what was past the image stays (as documented)", async () => {
    const f = oldDisk("tail-no", 8 * MiB);
    const image = random(MiB);
    const r = await writeImage(chunked(image), f, { expectedSize: image.length, zeroTail: "no" });
    expect(r.tail).toEqual({ bytes: 0, method: "none", ms: 0 });
    expect(count(fs.readFileSync(f).subarray(MiB))).toBe((7 * MiB) / 4096);
  });
});

describe("writeImage refusals", () => {
  test("too large (known size): refused before a byte is written", async () => {
    const [before, ours] = disks("big", 4 * MiB);
    const image = random(4 * MiB + 1);
    const e = await writeImage(chunked(image), ours, { expectedSize: image.length }).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/does not fit disk/);
    await same(before, ours);
  });
  test("too large with the prefix", async () => {
    const [before, ours] = disks("bigp", 4 * MiB);
    const e = await writeImage(chunked(random(3 * MiB + 1)), ours, { expectedSize: 3 * MiB + 1, prefix: new Uint8Array(MiB) }).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    await same(before, ours);
  });
  test("too large (unknown size): stops when the stream passes the disk end, file not extended", async () => {
    const [, ours] = disks("bigu", 4 * MiB);
    const e = await writeImage(chunked(random(5 * MiB)), ours, { expectedSize: null }).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/does not fit disk/);
    expect(fs.statSync(ours).size).toBe(4 * MiB);
  });
  test("short stream with a known size is an error", async () => {
    const [, ours] = disks("short", 4 * MiB);
    const e = await writeImage(chunked(random(MiB)), ours, { expectedSize: 2 * MiB }).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/ended after 1048576 of 2097152 bytes/);
  });
  test("a failing source stream is one SnfError", async () => {
    const [, ours] = disks("fail", 4 * MiB);
    let n = 0;
    const s = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ > 3) c.error(new Error("connection reset"));
        else c.enqueue(new Uint8Array(100000).fill(1));
      },
    });
    const e = await writeImage(s, ours, {}).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/connection reset/);
  });
  test("abort signal stops the copy", async () => {
    const [, ours] = disks("abort", 4 * MiB);
    const ac = new AbortController();
    const s = new ReadableStream<Uint8Array>({
      async pull(c) {
        await Bun.sleep(5);
        c.enqueue(new Uint8Array(4096).fill(2));
      },
    });
    setTimeout(() => ac.abort(new Error("SIGTERM")), 50);
    const e = await writeImage(s, ours, { signal: ac.signal }).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/interrupted/);
  });
  test("missing, directory and character-device targets", async () => {
    for (const [p, re] of [
      [path.join(dir, "nope"), /does not exist/],
      [dir, /neither a block device nor a regular file/],
      ["/dev/null", /neither a block device nor a regular file/],
    ] as const) {
      const e = await openTarget(p).catch((e) => e);
      expect(e).toBeInstanceOf(SnfError);
      expect(e.message).toMatch(re);
    }
  });
});

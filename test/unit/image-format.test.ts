import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { decompress, detectCompression, mbrPrefix, openImage, peek } from "../../src/image/format.ts";
import { resolveImageSource } from "../../src/image/source.ts";
import { SnfError } from "../../src/errors.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-format-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const payload = (() => {
  const b = new Uint8Array(3 * 1024 * 1024 + 17);
  for (let i = 0; i < b.length; i += 4096) b[i] = i % 251;
  crypto.getRandomValues(b.subarray(0, 65536));
  return b;
})();

async function compress(tool: string, data: Uint8Array): Promise<Uint8Array> {
  const p = Bun.spawn([tool, "-c"], { stdin: data, stdout: "pipe" });
  const out = new Uint8Array(await new Response(p.stdout).arrayBuffer());
  expect(await p.exited).toBe(0);
  return out;
}

const all = async (s: ReadableStream<unknown>) => new Uint8Array(await new Response(s as ReadableStream<Uint8Array>).arrayBuffer());

describe("compression", () => {
  for (const tool of ["gzip", "xz", "zstd"] as const) {
    test(`${tool}: detected by magic and decompressed`, async () => {
      const z = await compress(tool, payload);
      expect(await detectCompression(z.subarray(0, 6))).toBe(tool);
      const out = await all(decompress(new Blob([z]).stream(), tool));
      expect(out.length).toBe(payload.length);
      expect(Bun.hash(out)).toBe(Bun.hash(payload));
    });
  }
  test("magic, not name: a .gz-named raw file is raw, a .img-named xz file is xz", async () => {
    fs.writeFileSync(path.join(dir, "raw.gz"), payload);
    fs.writeFileSync(path.join(dir, "packed.img"), await compress("xz", payload));
    for (const name of ["raw.gz", "packed.img"]) {
      const src = await resolveImageSource(name, { imageDir: dir, format: "diskdump" });
      const { stream, size, compression } = await openImage(src);
      expect(compression).toBe(name === "raw.gz" ? null : "xz");
      expect(size).toBe(name === "raw.gz" ? payload.length : null);
      expect(Bun.hash(await all(stream))).toBe(Bun.hash(payload));
    }
  });
  test("raw data and short heads are not compressed", async () => {
    expect(await detectCompression(new Uint8Array([0x1f]))).toBeNull();
    expect(await detectCompression(new Uint8Array(512))).toBeNull();
    expect(await detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfe]))).toBeNull();
  });
  test("corrupt compressed data is one SnfError", async () => {
    const z = await compress("gzip", payload);
    z.fill(0x55, 100, 2000);
    const e = await all(decompress(new Blob([z]).stream(), "gzip")).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/^gzip decompression of the image failed: /);
    expect(e.message).not.toContain("\n");
  });
  test("empty images are refused by openImage, before anyone writes: 0-byte file, compressed nothing, empty stream", async () => {
    fs.writeFileSync(path.join(dir, "zero"), "");
    fs.writeFileSync(path.join(dir, "nothing.xz"), await compress("xz", new Uint8Array(0)));
    fs.writeFileSync(path.join(dir, "nothing.zst"), await compress("zstd", new Uint8Array(0)));
    const cases: [string, RegExp][] = [
      ["zero", /^image local:\/\/zero is empty \(it has 0 bytes\): refusing to deploy it; the disk was not touched$/],
      ["nothing.xz", /is empty \(its xz stream holds 0 bytes\)/],
      ["nothing.zst", /is empty \(its zstd stream holds 0 bytes\)/],
    ];
    for (const [name, msg] of cases) {
      const src = await resolveImageSource(name, { imageDir: dir, format: "diskdump" });
      const e = await openImage(src).catch((e) => e);
      expect(e).toBeInstanceOf(SnfError);
      expect(e.message).toMatch(msg);
    }
    let cancelled = false;
    const stream = (chunks: Uint8Array[]) =>
      new ReadableStream<Uint8Array>({
        pull(c) {
          const n = chunks.shift();
          if (n) c.enqueue(n);
          else c.close();
        },
        cancel() {
          cancelled = true;
        },
      });
    const http = (chunks: Uint8Array[]) => ({ kind: "http" as const, display: "http://127.0.0.1/img", size: null, open: async () => stream(chunks) });
    const e = await openImage(http([new Uint8Array(0)])).catch((e) => e);
    expect(e.message).toMatch(/^image http:\/\/127\.0\.0\.1\/img is empty \(it has 0 bytes\)/);
    const gz = await openImage(http([(await compress("gzip", new Uint8Array(0))).subarray(0, 3), (await compress("gzip", new Uint8Array(0))).subarray(3)])).catch((e) => e);
    expect(gz.message).toMatch(/its gzip stream holds 0 bytes/);
    // one byte is an image: it is handed on whole
    const one = await openImage(http([new Uint8Array([7])]));
    expect([...(await all(one.stream))]).toEqual([7]);
    expect(cancelled).toBe(false);
  });
  test("truncated xz is an error", async () => {
    const z = await compress("xz", payload);
    const e = await all(decompress(new Blob([z.subarray(0, z.length >> 1)]).stream(), "xz")).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
  });
  test("peek keeps every byte", async () => {
    const { head, stream } = await peek(new Blob([payload]).stream(), 6);
    expect([...head]).toEqual([...payload.subarray(0, 6)]);
    expect(Bun.hash(await all(stream))).toBe(Bun.hash(payload));
    const e = await peek(new Blob([new Uint8Array(3)]).stream(), 6);
    expect(e.head.length).toBe(3);
    expect((await all(e.stream)).length).toBe(3);
  });
});

async function sfdiskJson(file: string) {
  const p = Bun.spawn(["sfdisk", "--json", file], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(p.stdout).text();
  expect(await p.exited).toBe(0);
  return JSON.parse(out).partitiontable;
}

describe("mbrPrefix", () => {
  const MiB = 1024 * 1024;
  test("extdump: msdos label, bootable type 83 from 2048 to the image end, syslinux boot code", async () => {
    const img = 100 * MiB + 1000;
    const prefix = await mbrPrefix("extdump", img, 2048 * MiB);
    expect(prefix.length).toBe(MiB);
    const f = path.join(dir, "ext.disk");
    fs.writeFileSync(f, prefix);
    fs.truncateSync(f, MiB + img);
    const t = await sfdiskJson(f);
    expect(t.label).toBe("dos");
    expect(t.partitions.length).toBe(1);
    expect(t.partitions[0]).toMatchObject({ start: 2048, size: Math.floor((MiB + img) / 512) - 2048, type: "83", bootable: true });
    const code = fs.readFileSync("/usr/lib/syslinux/mbr/mbr.bin");
    expect(Buffer.from(prefix.subarray(0, 440)).equals(code.subarray(0, 440))).toBe(true);
    expect(prefix.subarray(512).every((b) => b === 0)).toBe(true);
  });
  test("ntfsdump: type 7; unknown image size: partition to the disk end", async () => {
    const disk = 64 * MiB;
    const prefix = await mbrPrefix("ntfsdump", null, disk);
    const f = path.join(dir, "ntfs.disk");
    fs.writeFileSync(f, prefix);
    fs.truncateSync(f, disk);
    const t = await sfdiskJson(f);
    expect(t.partitions[0]).toMatchObject({ start: 2048, size: disk / 512 - 2048, type: "7", bootable: true });
  });
  test("image too big for the disk, missing boot code", async () => {
    await expect(mbrPrefix("extdump", 64 * MiB, 64 * MiB)).rejects.toThrow(/does not fit/);
    await expect(mbrPrefix("extdump", MiB, 64 * MiB, path.join(dir, "none.bin"))).rejects.toThrow(/syslinux-common/);
  });
});

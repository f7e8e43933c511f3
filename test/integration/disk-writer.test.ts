/** Root only: the writer onto a real loop block device (zeroing by fallocate punch on the device). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeImage } from "../../src/disk/writer.ts";
import { exportDisk } from "../../src/disk/reader.ts";
import { openTarget } from "../../src/disk/target.ts";
import { resolveLocal } from "../../src/image/sources/local.ts";
import { openImage } from "../../src/image/format.ts";

const MiB = 1024 * 1024;
let dir: string;
const loops: string[] = [];

async function run(argv: string[]): Promise<string> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")}: ${err.trim()}`);
  return out.trim();
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-loop-"));
});
afterAll(async () => {
  for (const l of loops) await run(["losetup", "-d", l]).catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});

function image(size: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let o = 0; o + 4096 <= size; o += 4096) if ((o / 4096) % 9 === 0) crypto.getRandomValues(b.subarray(o, o + 4096));
  crypto.getRandomValues(b.subarray(size - 777)); // unaligned dense tail
  return b;
}

/** A 64 MiB backing file of random old data and a copy of it for dd: [backing, ref]. */
function oldPair(name: string): [string, string] {
  const old = new Uint8Array(64 * MiB);
  for (let o = 0; o < old.length; o += 65536) crypto.getRandomValues(old.subarray(o, o + 65536));
  const backing = path.join(dir, `${name}-backing`);
  const ref = path.join(dir, `${name}-ref`);
  fs.writeFileSync(backing, old);
  fs.writeFileSync(ref, old);
  return [backing, ref];
}

test(
  "loop device: byte-identical to dd over random old data, zero runs punched (holes in the backing file), detached afterwards",
  async () => {
    const size = 64 * MiB;
    const [backing, ref] = oldPair("dense");
    const img = image(40 * MiB + 777);
    // Long all-zero stretch so that some runs cover whole 4 MiB chunks.
    img.fill(0, 8 * MiB, 24 * MiB);
    const imgPath = path.join(dir, "img");
    fs.writeFileSync(imgPath, img);
    await run(["dd", `if=${imgPath}`, `of=${ref}`, "bs=1M", "conv=notrunc", "status=none"]);

    const loop = await run(["losetup", "-f", "--show", backing]);
    loops.push(loop);
    const t = await openTarget(loop);
    expect(t).toMatchObject({ kind: "block", size });

    const r = await writeImage(Bun.file(imgPath).stream(), loop, { expectedSize: img.length });
    expect(r.bytes).toBe(img.length);
    expect(r.zeroMethod).toBe("punch");
    expect(r.zeroBytes).toBeGreaterThanOrEqual(16 * MiB);

    // What the device shows (O_DIRECT export) and what reached the backing file.
    const out = path.join(dir, "exported");
    const fd = fs.openSync(out, "w");
    expect(await exportDisk(loop, fd)).toBe(size);
    fs.closeSync(fd);
    await run(["cmp", ref, out]);
    await run(["losetup", "-d", loop]);
    loops.pop();
    await run(["cmp", ref, backing]);
    // Zero runs reached the backing file as holes (write-zeroes that may
    // unmap: the loop driver punches), not as written data nor as unwritten
    // extents (BLKZEROOUT would have left those).
    const holes = size - fs.statSync(backing).blocks * 512;
    expect(holes).toBeGreaterThanOrEqual(16 * MiB);
    expect(await run(["losetup", "-j", backing])).toBe("");
  },
  60_000,
);

test(
  "too large for the loop device: refused, device untouched",
  async () => {
    const backing = path.join(dir, "small");
    const old = new Uint8Array(8 * MiB).fill(0xab);
    fs.writeFileSync(backing, old);
    const loop = await run(["losetup", "-f", "--show", backing]);
    loops.push(loop);
    const e = await writeImage(new Blob([new Uint8Array(8 * MiB + 512)]).stream(), loop, { expectedSize: 8 * MiB + 512 }).catch((e) => e);
    expect(e.message).toMatch(/does not fit disk/);
    await run(["losetup", "-d", loop]);
    loops.pop();
    expect(Bun.hash(fs.readFileSync(backing))).toBe(Bun.hash(old));
  },
  30_000,
);

test(
  "sparse local image onto a loop device: holes (lseek SEEK_DATA/SEEK_HOLE) zeroed over old data, byte-identical to dd",
  async () => {
    const [backing, ref] = oldPair("sparse");
    // Holes at the start and the end, data at odd offsets, an unaligned size.
    const imgDir = path.join(dir, "images");
    fs.mkdirSync(imgDir, { recursive: true });
    const imgPath = path.join(imgDir, "sparse");
    const imgSize = 48 * MiB + 1000;
    const fd = fs.openSync(imgPath, "w");
    fs.ftruncateSync(fd, imgSize);
    for (const [off, len] of [[5 * MiB + 3, 70_000], [20 * MiB - 10, 4 * MiB + 20], [40 * MiB + 4096, 12_345]] as const) {
      const b = new Uint8Array(len);
      crypto.getRandomValues(b.subarray(0, Math.min(len, 65536)));
      fs.writeSync(fd, b, 0, len, off);
    }
    fs.closeSync(fd);
    expect(fs.statSync(imgPath).blocks * 512).toBeLessThan(8 * MiB);
    await run(["dd", `if=${imgPath}`, `of=${ref}`, "bs=1M", "conv=notrunc", "status=none"]);

    const loop = await run(["losetup", "-f", "--show", backing]);
    loops.push(loop);
    const opened = await openImage(await resolveLocal("sparse", { imageDir: imgDir, format: "diskdump" }));
    const r = await writeImage(opened.stream, loop, { expectedSize: opened.size });
    expect(r.bytes).toBe(imgSize);
    expect(r.zeroMethod).toBe("punch");
    expect(r.zeroBytes).toBeGreaterThanOrEqual(36 * MiB);
    await run(["losetup", "-d", loop]);
    loops.pop();
    await run(["cmp", ref, backing]);
    expect(64 * MiB - fs.statSync(backing).blocks * 512).toBeGreaterThanOrEqual(36 * MiB); // the holes stay holes
  },
  60_000,
);

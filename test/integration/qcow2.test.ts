/**
 * qcow2 images made by Debian's qemu-img from the cached Debian test image
 * (plain v3, compressed zlib and zstd, v2 compat=0.10, zero clusters,
 * extended L2), converted by the product path (local source or http Range
 * reads → openImage → writeImage) onto disks that held random data, each
 * byte-identical to `qemu-img convert -O raw` of the same file (and so are
 * small qemu-img layouts: preallocated metadata, 512 B / 2 MiB clusters, lazy
 * refcounts, an internal snapshot, a shrunk image); a server
 * without Range support refused with one line; and ONE `create` through the
 * helper VM for a compressed qcow2.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import fs from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import { writeImage } from "../../src/disk/writer.ts";
import { openImage } from "../../src/image/format.ts";
import { resolveImageSource } from "../../src/image/source.ts";
import { SnfError } from "../../src/errors.ts";
import { HELPER_DIR, placeImage, runCreate } from "../lib/deploy.ts";
import { debianImage, derivedArtefact, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";
import { attachLoop } from "../lib/loop.ts";

const MiB = 1024 * 1024;
const PASSWORD = "Qc0w2-P4ss!";
let work: string;
let tmp: string;
let imageDir: string;
let debian: DebianImage;
let server: Server<undefined>;
let base: string;
const ranges: string[] = [];

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

/** qemu-img artefacts of the cached image, built once into the shared cache. */
const variant = (name: string, build: (out: string) => void) => derivedArtefact(debian, "issue10-qcow2", name, build);

const VARIANTS: Record<string, (src: string, out: string) => void> = {
  "plain-v3.qcow2": (src, out) => sh(["qemu-img", "convert", "-O", "qcow2", src, out]),
  "compressed-zlib.qcow2": (src, out) => sh(["qemu-img", "convert", "-c", "-O", "qcow2", src, out]),
  "compressed-zstd.qcow2": (src, out) => sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", src, out]),
  "v2.qcow2": (src, out) => sh(["qemu-img", "convert", "-O", "qcow2", "-o", "compat=0.10", src, out]),
  // Zero clusters: a plain v3 copy with data ranges overwritten by zero writes
  // (allocated clusters become zero-flagged) and unallocated ranges marked zero too.
  "zero-clusters.qcow2": (src, out) => {
    sh(["qemu-img", "convert", "-O", "qcow2", src, out]);
    sh(["qemu-io", "-f", "qcow2", "-c", "write -z 0 512k", "-c", "write -z 40M 24M", "-c", "write -z 1900M 64M", out]);
  },
  "extended-l2.qcow2": (src, out) => sh(["qemu-img", "convert", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=128k", src, out]),
};

/** A disk that held random data: 1 MiB of it every 8 MiB, on a sparse file of `size`. */
function randomDisk(name: string, size: number): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  const fd = fs.openSync(d, "w");
  fs.ftruncateSync(fd, size);
  const junk = new Uint8Array(MiB);
  for (let o = 0; o < size; o += 8 * MiB) {
    crypto.getRandomValues(junk.subarray(0, 65536));
    for (let k = 65536; k < MiB; k += 65536) junk.copyWithin(k, 0, 65536);
    fs.writeSync(fd, junk, 0, MiB, o);
  }
  fs.closeSync(fd);
  return d;
}

/** qemu-img's raw conversion of `img` (cached next to it). */
function reference(img: string): string {
  const ref = `${img}.raw`;
  if (!existsSync(ref)) {
    sh(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, `${ref}.tmp`]);
    renameSync(`${ref}.tmp`, ref);
  }
  return ref;
}

function sameAs(disk: string, ref: string): void {
  const n = statSync(ref).size;
  const p = Bun.spawnSync(["cmp", "-n", String(n), disk, ref], { stdout: "pipe", stderr: "pipe" });
  expect(p.stdout.toString() + p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
}

async function convert(imgId: string, disk: string, dir = imageDir) {
  const src = await resolveImageSource(imgId, { imageDir: dir, format: "qcow2" });
  const o = await openImage(src, undefined, "qcow2");
  return writeImage(o.stream, disk, { expectedSize: o.size });
}

/** A Range-capable server (and one that ignores Range) for files in imageDir. */
function serve(): Server<undefined> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const u = new URL(req.url);
      const file = Bun.file(join(imageDir, u.pathname.split("/").pop()!));
      if (!(await file.exists())) return new Response("no", { status: 404 });
      const size = file.size;
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get("range") ?? "");
      if (req.method === "HEAD") return new Response(null, { headers: { "content-length": String(size) } });
      // Through a TransformStream: Bun.serve answers Range by itself for a file (or file stream) body.
      if (u.pathname.startsWith("/norange/") || !m) return new Response(file.stream().pipeThrough(new TransformStream()));
      ranges.push(`${m[1]}-${m[2]}`);
      const a = Number(m[1]);
      const b = Math.min(Number(m[2]), size - 1);
      return new Response(file.slice(a, b + 1), {
        status: 206,
        headers: { "content-range": `bytes ${a}-${b}/${size}`, "content-length": String(b - a + 1) },
      });
    },
  });
}

beforeAll(async () => {
  work = mkdtempSync(join("/var/tmp", "snf-qcow2-"));
  tmp = join(work, "tmp");
  mkdirSync(tmp, { mode: 0o1777 });
  imageDir = join(work, "images");
  mkdirSync(imageDir);
  debian = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  for (const [name, build] of Object.entries(VARIANTS)) placeImage(variant(name, (out) => build(debian.path, out)), join(imageDir, name));
  server = serve();
  base = `http://127.0.0.1:${server.port}`;
}, 1_800_000);

afterAll(() => {
  server?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("qemu-img's qcow2 files → disk, byte-identical to qemu-img convert -O raw", () => {
  for (const name of Object.keys(VARIANTS)) {
    test(name, async () => {
      const img = join(imageDir, name);
      const info = JSON.parse(sh(["qemu-img", "info", "--output=json", img])) as { "virtual-size": number };
      const disk = randomDisk(`${name}.disk`, info["virtual-size"] + 64 * MiB);
      const r = await convert(name, disk);
      expect(r.bytes).toBe(info["virtual-size"]);
      sameAs(disk, reference(variant(name, () => {})));
      console.log(`[qcow2] ${name}: ${(r.ms / 1000).toFixed(2)} s, ${r.zeroBytes} bytes zeroed (${r.zeroMethod})`);
    }, 120_000);
  }

  test("zero clusters onto a loop block device (fallocate punch on the device)", async () => {
    const name = "zero-clusters.qcow2";
    const disk = randomDisk("loop.disk", 2048 * MiB + 64 * MiB);
    const loop = await attachLoop(disk, { writable: true });
    try {
      const r = await convert(name, loop.dev);
      expect(r.zeroMethod).toBe("punch");
    } finally {
      await loop.detach();
    }
    sameAs(disk, reference(variant(name, () => {})));
  }, 120_000);
});

test("small qemu-img layouts: preallocated metadata, 512 B and 2 MiB clusters, lazy refcounts, an internal snapshot, shrunk then grown", async () => {
  const io = (img: string, ...cmds: string[]) => sh(["qemu-io", "-f", "qcow2", ...cmds.flatMap((c) => ["-c", c]), img]);
  const layouts: Record<string, (f: string) => void> = {
    "prealloc-metadata": (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", f, "64M"]);
      io(f, "write -P 0x11 1M 3M", "write -z 10M 1M");
    },
    "cluster-512": (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", f, "16M"]);
      io(f, "write -P 0x22 0 1M", "write -P 0x33 5M 100k");
    },
    "cluster-2M": (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", f, "64M"]);
      io(f, "write -P 0x44 3M 5M", "write -z 20M 4M");
    },
    "lazy-refcounts": (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", f, "32M"]);
      io(f, "write -P 0x55 0 2M");
    },
    snapshot: (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", f, "32M"]);
      io(f, "write -P 0x11 0 4M");
      sh(["qemu-img", "snapshot", "-c", "s1", f]);
      io(f, "write -P 0x12 1M 1M", "write -z 2M 64k");
    },
    resized: (f) => {
      sh(["qemu-img", "create", "-q", "-f", "qcow2", f, "2G"]);
      io(f, "write -P 0x21 1000M 1M", "write -P 0x22 1M 1M");
      sh(["qemu-img", "resize", "-q", "--shrink", f, "512M"]);
      sh(["qemu-img", "resize", "-q", f, "600M"]);
    },
  };
  for (const [name, make] of Object.entries(layouts)) {
    const f = join(imageDir, `${name}.qcow2`);
    make(f);
    const ref = join(work, `${name}.ref`);
    sh(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", f, ref]);
    const disk = randomDisk(`${name}.disk`, statSync(ref).size + 16 * MiB);
    await convert(`${name}.qcow2`, disk);
    sameAs(disk, ref);
  }
}, 120_000);

describe("http(s): Range reads", () => {
  test("compressed qcow2 over http, adjacent clusters in one request", async () => {
    const name = "compressed-zlib.qcow2";
    ranges.length = 0;
    const disk = randomDisk("http.disk", 2048 * MiB + 64 * MiB);
    await convert(`${base}/${name}`, disk);
    sameAs(disk, reference(variant(name, () => {})));
    // ~80 MiB of compressed clusters: a few dozen coalesced requests, not one per cluster.
    expect(ranges.length).toBeGreaterThan(2);
    expect(ranges.length).toBeLessThan(200);
    console.log(`[qcow2] http: ${ranges.length} range requests`);
  }, 120_000);

  test("a server that ignores Range is refused with one line", async () => {
    const disk = randomDisk("norange.disk", 64 * MiB);
    const e = await convert(`${base}/norange/plain-v3.qcow2`, disk).catch((e) => e);
    expect(e).toBeInstanceOf(SnfError);
    expect(e.message).toMatch(/does not answer Range requests/);
    expect(e.message).not.toContain("\n");
  });
});

test("create: a compressed qcow2 (img_format=qcow2) with its NAME.meta through the helper VM", async () => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  const m0 = mountDisk(debian.path, debian.rootPartition);
  const originalHostname = m0.read("/etc/hostname");
  m0.close();
  // snf-image-creator's format. The metadata skips two tasks; img_properties brings one back.
  fs.writeFileSync(
    join(imageDir, "compressed-zstd.qcow2.meta"),
    JSON.stringify({ properties: { EXCLUDE_TASK_ASSIGNHOSTNAME: "yes", EXCLUDE_TASK_CHANGEPASSWORD: "yes", OSFAMILY: "linux" }, "disk-format": "diskdump" }),
  );
  const disk = join(work, "create.disk");
  rmSync(disk, { force: true });
  sh(["truncate", "-s", String(3 * 1024 * MiB), disk]);
  const r = await runCreate({
    imageDir,
    disks: [disk],
    instance: "qcow1.example.org",
    osp: { img_id: "compressed-zstd.qcow2", img_format: "qcow2", img_passwd: PASSWORD, img_properties: '{"EXCLUDE_TASK_CHANGEPASSWORD": "no"}' },
    extraEnv: { TMPDIR: tmp },
  });
  if (r.code !== 0) console.log(r.output);
  expect(r.code).toBe(0);
  expect(r.output).toMatch(/image is qcow2 v3, 65536-byte clusters/);
  expect(r.output).toMatch(/image metadata compressed-zstd.qcow2.meta: EXCLUDE_TASK_ASSIGNHOSTNAME EXCLUDE_TASK_CHANGEPASSWORD OSFAMILY/);
  expect(r.output).not.toContain(PASSWORD);
  expect(readdirSync(tmp)).toEqual([]);
  const m = mountDisk(disk, debian.rootPartition);
  try {
    expect(m.read("/etc/hostname")).toBe(originalHostname); // AssignHostname skipped by the metadata
    expect(verifyCrypt(PASSWORD, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true); // img_properties won
    // The filesystem grew to the 3 GiB disk: the helper saw a normal diskdump.
    expect(m.partitions()[0]!.size * 512).toBeGreaterThan(2.5 * 1024 * MiB);
  } finally {
    m.close();
  }
  console.log(`[qcow2] create: ${(r.ms / 1000).toFixed(1)} s`);
}, 600_000);

/**
 * Image sources through the real `create` (helper VM under TCG): http from a
 * Bun.serve on 127.0.0.1 (plain with Content-Length, chunked without it, a
 * redirect chain, 404, a connection cut half way — with and without a length)
 * and the `null` source (customize what is already on the disk).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, openSync, readSync, closeSync, readdirSync, rmSync, statSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Server, TCPSocketListener } from "bun";
import { HELPER_DIR, runCreate, type CreateSpec, type ScriptRun } from "../lib/deploy.ts";
import { cacheDir, debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Src-P4ssw0rd!";
const SECRET = "s3cr3t-in-url";
const MiB = 1024 * 1024;
const DISK = 3 * 1024 * MiB;
const b64 = (s: string) => Buffer.from(s).toString("base64");
const personality = JSON.stringify([{ path: "/root/src.txt", contents: b64("source test\n"), mode: 0o600 }]);

let work: string;
let tmp: string;
let debian: DebianImage;
let packed: string;
let server: Server<undefined>;
let raw: TCPSocketListener;
let base: string;
let rawBase: string;
const hits: string[] = [];

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}
function freshDisk(name: string): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  sh(["truncate", "-s", String(DISK), d]);
  return d;
}
function qemuPids(): string[] {
  const p = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}
function childPids(): string[] {
  // decompressors or anything else the create left running
  const p = Bun.spawnSync(["pgrep", "-P", String(process.pid)], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}
async function create(spec: Omit<CreateSpec, "imageDir">): Promise<ScriptRun> {
  const r = await runCreate({ imageDir: work, ...spec, extraEnv: { TMPDIR: tmp } });
  if (r.code !== 0) console.log(r.output.split("\n").filter((l) => !l.startsWith("HELPER:")).join("\n"));
  expect(r.output).not.toContain(PASSWORD);
  expect(r.output).not.toContain(SECRET);
  expect(qemuPids()).toEqual([]);
  expect(readdirSync(tmp)).toEqual([]);
  expect(childPids()).toEqual([]);
  return r;
}
function rate(r: ScriptRun): string {
  const m = /copied (\d+) bytes in ([\d.]+) s/.exec(r.output);
  return m ? `${(Number(m[1]) / MiB / Math.max(Number(m[2]), 0.001)).toFixed(0)} MiB/s over ${m[2]} s` : "?";
}
function assertIdentical(disk: string) {
  const size = statSync(debian.path).size;
  const cmp = Bun.spawnSync(["cmp", "-n", String(size), disk, debian.path], { stdout: "pipe", stderr: "pipe" });
  expect(cmp.stdout.toString() + cmp.stderr.toString()).toBe("");
  expect(cmp.exitCode).toBe(0);
  expect(Bun.spawnSync(["cmp", "-n", String(DISK - size), "-i", `${size}:0`, disk, "/dev/zero"]).exitCode).toBe(0);
}
function checkCustomized(disk: string, hostname: string) {
  const m = mountDisk(disk, debian.rootPartition);
  try {
    expect(m.read("/etc/hostname").trim()).toBe(hostname);
    expect(verifyCrypt(PASSWORD, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
    expect(m.read("/root/src.txt")).toBe("source test\n");
  } finally {
    m.close();
  }
}

/** The image file as a chunked body (no Content-Length), 1 MiB at a time. */
function chunked(path: string): ReadableStream<Uint8Array> {
  const fd = openSync(path, "r");
  let pos = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      const buf = new Uint8Array(MiB);
      const n = readSync(fd, buf, 0, MiB, pos);
      pos += n;
      if (n === 0) {
        closeSync(fd);
        c.close();
      } else c.enqueue(buf.subarray(0, n));
    },
    cancel: () => closeSync(fd),
  });
}

beforeAll(async () => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-src-"));
  tmp = join(work, "tmp");
  mkdirSync(tmp);
  debian = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  const dir = join(cacheDir(), `issue3-${debian.recipeKey}`);
  mkdirSync(dir, { recursive: true });
  packed = join(dir, "disk.zstd"); // shared with formats.test.ts
  if (!existsSync(packed)) {
    sh(["zstd", "-3", "-T2", "-q", "-f", debian.path, "-o", `${packed}.tmp-${process.pid}`]);
    renameSync(`${packed}.tmp-${process.pid}`, packed);
  }

  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const u = new URL(req.url);
      hits.push(`${req.method} ${u.pathname}`);
      switch (u.pathname) {
        case "/plain.img":
          return new Response(Bun.file(debian.path));
        case "/chunked":
          return new Response(req.method === "HEAD" ? null : chunked(debian.path), { headers: { "content-type": "application/octet-stream" } });
        case "/r1":
          return Response.redirect("/r2", 302);
        case "/r2":
          return Response.redirect(`${base}/r3`, 301);
        case "/r3":
          return new Response(null, { status: 307, headers: { location: "/packed" } });
        case "/packed":
          return new Response(Bun.file(packed));
        case "/loop":
          return Response.redirect("/loop", 302);
        default:
          return new Response("no such image\n", { status: 404 });
      }
    },
  });
  base = `http://127.0.0.1:${server.port}`;

  // A server that announces (or not) a length and hangs up half way.
  const half = new Uint8Array(32 * MiB);
  readSync(openSync(debian.path, "r"), half, 0, half.length, 0);
  raw = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s, d) {
        const line = new TextDecoder().decode(d).split("\r\n")[0] ?? "";
        const [method, path] = line.split(" ");
        hits.push(`${method} raw${path}`);
        const head =
          path === "/cut-chunked"
            ? "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            : `HTTP/1.1 200 OK\r\ncontent-length: ${64 * MiB}\r\nconnection: close\r\n\r\n`;
        if (method === "HEAD") {
          s.end(head);
          return;
        }
        s.write(head);
        if (path === "/cut-chunked") {
          // a few complete chunks, then the connection ends without the last chunk
          for (let i = 0; i < 4; i++) s.write(Buffer.concat([Buffer.from(`${(MiB).toString(16)}\r\n`), Buffer.from(half.subarray(i * MiB, (i + 1) * MiB)), Buffer.from("\r\n")]));
          s.flush();
          setTimeout(() => s.end(), 200);
        } else {
          s.write(half);
          s.flush();
          setTimeout(() => s.end(), 200);
        }
      },
      drain() {},
    },
  });
  rawBase = `http://127.0.0.1:${raw.port}`;
}, 1_800_000);

afterAll(() => {
  server?.stop(true);
  raw?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("http source", () => {
  test("plain, with Content-Length: deployed and customized", async () => {
    const disk = freshDisk("plain-disk");
    const r = await create({
      disks: [disk],
      instance: "web.example.org",
      osp: { img_id: `${base}/plain.img`, img_format: "diskdump", img_passwd: PASSWORD, img_personality: personality },
    });
    expect(r.code).toBe(0);
    expect(r.output).toContain(`image ${base}/plain.img (diskdump, ${statSync(debian.path).size} bytes)`);
    console.log(`[sources] http plain: ${rate(r)}, whole create ${(r.ms / 1000).toFixed(1)} s`);
    checkCustomized(disk, "web.example.org");
  }, 600_000);

  test("chunked, no Content-Length: byte-identical", async () => {
    const disk = freshDisk("chunked-disk");
    const r = await create({ disks: [disk], osp: { img_id: `${base}/chunked`, img_format: "diskdump", img_properties: '{"EXCLUDE_ALL_TASKS":"yes"}' } });
    expect(r.code).toBe(0);
    console.log(`[sources] http chunked: ${rate(r)}`);
    assertIdentical(disk);
  }, 600_000);

  test("a redirect chain (302 → 301 absolute → 307) to a zstd image without a telling name", async () => {
    hits.length = 0;
    const disk = freshDisk("redirect-disk");
    const r = await create({ disks: [disk], osp: { img_id: `${base}/r1`, img_format: "diskdump", img_properties: '{"EXCLUDE_ALL_TASKS":"yes"}' } });
    expect(r.code).toBe(0);
    expect(r.output).toContain("image is zstd-compressed");
    // the HEAD probe walks the chain before the disk is touched; the GET goes to where it ended
    expect(hits).toEqual(["HEAD /r1", "HEAD /r2", "HEAD /r3", "HEAD /packed", "GET /packed"]);
    console.log(`[sources] http redirect+zstd: ${rate(r)}`);
    assertIdentical(disk);
  }, 600_000);

  const failures: [string, () => string, RegExp, boolean][] = [
    ["404 (credentials and query hidden)", () => `http://admin:${SECRET}@127.0.0.1:${server.port}/missing.img?token=${SECRET}`, /image URL http:\/\/127\.0\.0\.1:\d+\/missing\.img\?…: HTTP 404/, false],
    ["a redirect loop", () => `${base}/loop`, /more than 5 redirects/, false],
    ["nothing listening", () => "http://127.0.0.1:9/x.img", /cannot reach image URL http:\/\/127\.0\.0\.1:9\/x\.img/, false],
    ["connection cut half way (Content-Length)", () => `http://u:${SECRET}@127.0.0.1:${raw.port}/cut`, /image URL http:\/\/127\.0\.0\.1:\d+\/cut: download (truncated, \d+ of 67108864 bytes|failed after \d+ bytes)/, true],
    ["connection cut half way (chunked)", () => `${rawBase}/cut-chunked`, /image URL http:\/\/127\.0\.0\.1:\d+\/cut-chunked: download (truncated|failed)/, true],
  ];
  test.each(failures)("%s: one line naming the URL, nothing left, helper never started", async (_n, url, re, copying) => {
    const disk = freshDisk("fail-disk");
    const r = await create({ disks: [disk], osp: { img_id: url(), img_format: "diskdump", img_passwd: PASSWORD } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/^snf-image create: ERROR: /);
    expect(r.lastLine).toMatch(re);
    expect(r.lastLine).not.toContain("admin");
    expect(r.output).not.toContain("HELPER:");
    expect(r.output.includes("Starting image copy")).toBe(copying);
  }, 600_000);
});

describe("null source", () => {
  test("customizes the image already on the disk without copying", async () => {
    const disk = join(work, "prefilled-disk");
    sh(["cp", "--sparse=always", debian.path, disk]);
    sh(["truncate", "-s", String(DISK), disk]);
    const r = await create({
      disks: [disk],
      instance: "again.example.org",
      osp: { img_id: "null", img_format: "diskdump", img_passwd: PASSWORD, img_personality: personality },
    });
    expect(r.code).toBe(0);
    expect(r.output).toContain("customizing what is already on the disk");
    expect(r.output).not.toContain("Starting image copy");
    checkCustomized(disk, "again.example.org");
  }, 600_000);

  test("on an empty disk: one line from the helper", async () => {
    const r = await create({ disks: [freshDisk("empty-disk")], osp: { img_id: "null", img_format: "diskdump", img_passwd: PASSWORD } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/^snf-image create: ERROR: .*(partition|no partitions)/);
  }, 600_000);
});

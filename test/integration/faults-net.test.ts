/**
 * Hostile servers and broken streams through the real `create`, the way
 * Ganeti calls it (dist/os/snf-image/create, reset environment): servers on
 * 127.0.0.1 that stall before the head, stall in the body, hang up, redirect
 * to file:// or in circles, send too much; compressed images cut short or
 * corrupted, over http and from IMAGE_DIR. HTTP_TIMEOUT is 2 s here.
 *
 * Each case: exit 1, ONE last line naming the cause (the URL without its
 * credentials), and afterwards no qemu, no loop device, no child process,
 * nothing under the run's TMPDIR and the password nowhere in the output or
 * under TMPDIR. All of them fail before the helper VM would boot.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Server, Socket, TCPSocketListener } from "bun";
import { leftovers, runCreate, type ScriptRun } from "../lib/deploy.ts";

const PASSWORD = "N3t-F4ult-s3cret";
const MiB = 1024 * 1024;
const TIMEOUT_S = 2;
const ERR = "snf-image create: ERROR: ";
const FORMATS = [
  ["gzip", "gz"],
  ["xz", "xz"],
  ["zstd", "zst"],
] as const;

let work: string;
let tmp: string;
let imageDir: string;
let served: string;
let server: Server<undefined>;
let raw: TCPSocketListener<{ answered: boolean }>;
let base: string;
let rawBase: string;
/** The same server, with the password as URL credentials (must never be printed). */
let secretBase: string;
let secretRawBase: string;
let zstdHead: Uint8Array;

function sh(cmd: string[]): void {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
}

/** Runs create on a fresh 64 MiB file disk and checks the failure contract. */
async function failingCreate(osp: Record<string, string>, config: Record<string, string> = {}): Promise<ScriptRun> {
  const disk = join(work, "disk");
  rmSync(disk, { force: true });
  sh(["truncate", "-s", String(64 * MiB), disk]);
  const r = await runCreate({
    disks: [disk],
    imageDir,
    config: { HTTP_TIMEOUT: String(TIMEOUT_S), ...config },
    extraEnv: { TMPDIR: tmp },
    osp: { img_format: "diskdump", img_passwd: PASSWORD, ...osp },
  });
  if (r.code !== 1) console.log(r.output);
  console.log(`[faults-net] ${r.lastLine}`);
  expect(r.code).toBe(1);
  expect(r.lastLine.startsWith(ERR)).toBe(true);
  expect(r.output.split("\n").filter((l) => l.includes("ERROR"))).toEqual([r.lastLine]);
  expect(r.output).not.toContain(PASSWORD);
  expect(r.output).not.toContain("HELPER:");
  expect(leftovers(work, tmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
  return r;
}
const cause = (r: ScriptRun) => r.lastLine.slice(ERR.length);
const port = (u: string) => new URL(u).port;

beforeAll(() => {
  work = mkdtempSync(join("/var/tmp", "snf-faults-net-"));
  tmp = join(work, "tmp");
  imageDir = join(work, "images");
  served = join(work, "served");
  for (const d of [tmp, imageDir, served]) mkdirSync(d);

  // 6 MiB that compresses like a disk would (some text, some noise); each
  // format whole, cut at half, and with 4 KiB in the middle overwritten.
  const payload = new Uint8Array(6 * MiB);
  const line = new TextEncoder().encode("snf-image fault test line, compressible filler text 0123456789\n");
  for (let i = 0; i < payload.length; i += line.length) payload.set(line.subarray(0, Math.min(line.length, payload.length - i)), i);
  for (let i = 0; i < payload.length; i += 64 * 1024) crypto.getRandomValues(payload.subarray(i, i + 512));
  writeFileSync(join(work, "payload"), payload);
  for (const [tool, ext] of FORMATS) {
    sh(["sh", "-c", `${tool} -c < ${work}/payload > ${work}/payload.${ext}`]);
    const whole = readFileSync(join(work, `payload.${ext}`));
    const corrupt = Buffer.from(whole);
    corrupt.fill(0x5a, corrupt.length >> 1, (corrupt.length >> 1) + 4096);
    for (const [name, bytes] of [
      [`truncated.${ext}`, whole.subarray(0, whole.length >> 1)],
      [`corrupt.${ext}`, corrupt],
    ] as const) {
      writeFileSync(join(imageDir, name), bytes);
      writeFileSync(join(served, name), bytes);
    }
  }
  writeFileSync(join(imageDir, "payload"), payload);
  // A file on the node that a config_url must never get at.
  writeFileSync(join(work, "node-secret.json"), JSON.stringify({ img_id: "payload", img_passwd: PASSWORD }));
  // Documents just over 1 MiB (the default CONFIG_URL_MAX_BYTES).
  const bigDoc = JSON.stringify({ img_id: "payload", img_passwd: PASSWORD, pad: "x".repeat(MiB) });

  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const u = new URL(req.url);
      const hop = /^\/hop(\d+)(\/.*)$/.exec(u.pathname);
      if (hop) return Response.redirect(Number(hop[1]) > 0 ? `/hop${Number(hop[1]) - 1}${hop[2]}` : hop[2]!, 302);
      if (u.pathname.startsWith("/img/")) return new Response(Bun.file(join(served, u.pathname.slice(5))));
      switch (u.pathname) {
        case "/to-file-image":
          return new Response(null, { status: 302, headers: { location: `file://${imageDir}/payload` } });
        case "/to-file-config":
          return new Response(null, { status: 301, headers: { location: `file://${work}/node-secret.json` } });
        case "/config.json":
          return Response.json({ img_id: "payload", img_passwd: PASSWORD });
        case "/big.json":
          return new Response(bigDoc);
        case "/big-chunked.json":
          return new Response(
            new ReadableStream({
              start(c) {
                for (let i = 0; i < bigDoc.length; i += 64 * 1024) c.enqueue(new TextEncoder().encode(bigDoc.slice(i, i + 64 * 1024)));
                c.close();
              },
            }),
          );
        default:
          return new Response("not here\n", { status: 404 });
      }
    },
  });
  base = `http://127.0.0.1:${server.port}`;
  secretBase = `http://admin:${PASSWORD}@127.0.0.1:${server.port}`;

  // Raw TCP: servers that answer HEAD properly and then misbehave on GET.
  // zstd reads its input 128 KiB at a time: a stream of noise, so that the
  // first MiB sent decompresses to data the writer gets before the stall.
  sh(["sh", "-c", `head -c ${2 * MiB} /dev/urandom | zstd -c > ${work}/noise.zst`]);
  const zstdWhole = readFileSync(join(work, "noise.zst"));
  zstdHead = zstdWhole.subarray(0, MiB);
  const answer = (s: Socket<{ answered: boolean }>, method: string, path: string) => {
    const head = (len: number) => `HTTP/1.1 200 OK\r\ncontent-length: ${len}\r\nconnection: close\r\n\r\n`;
    switch (path) {
      case "/stall-head":
      case "/config-stall-head":
        return; // accept, read the request, never answer
      case "/stall-body":
      case "/drop-body":
        if (method === "HEAD") return void s.end(head(32 * MiB));
        s.write(head(32 * MiB));
        s.write(new Uint8Array(MiB).fill(7));
        if (path === "/drop-body") setTimeout(() => s.end(), 100);
        return;
      case "/stall-body-zstd":
        if (method === "HEAD") return void s.end(head(zstdWhole.length));
        s.write(head(zstdWhole.length));
        s.write(zstdHead);
        return;
      case "/config-stall-body":
        s.write(head(200));
        s.write(`{"img_passwd": "${PASSWORD}", `);
        return;
      default:
        s.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    }
  };
  raw = Bun.listen<{ answered: boolean }>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(s) {
        s.data = { answered: false };
      },
      data(s, d) {
        if (s.data.answered) return;
        s.data.answered = true;
        const [method = "", target = ""] = new TextDecoder().decode(d).split("\r\n")[0]!.split(" ");
        answer(s, method, target.replace(/\?.*/, ""));
      },
    },
  });
  rawBase = `http://127.0.0.1:${raw.port}`;
  secretRawBase = `http://admin:${PASSWORD}@127.0.0.1:${raw.port}`;
}, 120_000);

afterAll(() => {
  server?.stop(true);
  raw?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("stalls: HTTP_TIMEOUT covers connect, head and body", () => {
  test("image server never answers: fails at resolve, before the disk", async () => {
    const r = await failingCreate({ img_id: `${secretRawBase}/stall-head?token=${PASSWORD}` });
    expect(cause(r)).toBe(`image URL ${rawBase}/stall-head?…: no response for 2 s (HTTP_TIMEOUT)`);
    expect(r.output).not.toContain("Starting image copy");
  }, 60_000);
  test("image server sends head and 1 MiB, then nothing: the copy stops", async () => {
    const r = await failingCreate({ img_id: `${secretRawBase}/stall-body` });
    expect(r.output).toContain("Starting image copy");
    expect(cause(r)).toBe(`image URL ${rawBase}/stall-body: download stalled, no data for 2 s after ${MiB} bytes (HTTP_TIMEOUT)`);
  }, 60_000);
  test("the same through the zstd decompressor", async () => {
    const r = await failingCreate({ img_id: `${rawBase}/stall-body-zstd` });
    expect(r.output).toContain("image is zstd-compressed");
    expect(r.output).toContain("Starting image copy");
    expect(cause(r)).toBe(`image URL ${rawBase}/stall-body-zstd: download stalled, no data for 2 s after ${zstdHead.length} bytes (HTTP_TIMEOUT)`);
  }, 60_000);
  test("config_url server never answers", async () => {
    const r = await failingCreate({ img_id: "payload", config_url: `${secretRawBase}/config-stall-head` });
    expect(cause(r)).toBe(`config_url ${rawBase}/config-stall-head: no response for 2 s (HTTP_TIMEOUT)`);
  }, 60_000);
  test("config_url server stops half way through the document", async () => {
    const r = await failingCreate({ img_id: "payload", config_url: `${secretRawBase}/config-stall-body` });
    expect(cause(r)).toMatch(new RegExp(`^config_url ${rawBase}/config-stall-body: download stalled, no data for 2 s after \\d+ bytes \\(HTTP_TIMEOUT\\)$`));
  }, 60_000);
});

describe("only http(s), bounded redirects, bounded documents", () => {
  test("image URL redirecting to file://", async () => {
    const r = await failingCreate({ img_id: `${secretBase}/to-file-image` });
    expect(cause(r)).toBe(`image URL ${base}/to-file-image redirects to file: (only http and https are followed)`);
  }, 60_000);
  test("config_url redirecting to file:// (a node file, read as root)", async () => {
    const r = await failingCreate({ img_id: "payload", config_url: `${secretBase}/to-file-config` });
    expect(cause(r)).toBe(`config_url ${base}/to-file-config redirects to file: (only http and https are followed)`);
  }, 60_000);
  test("config_url=file://: refused the same whether the file exists or not", async () => {
    const there = await failingCreate({ img_id: "payload", config_url: `file://${work}/node-secret.json` });
    const absent = await failingCreate({ img_id: "payload", config_url: `file://${work}/no-such.json` });
    expect(cause(there)).toBe("bad OS parameters: config_url: scheme must be one of http, https");
    expect(cause(absent)).toBe(cause(there));
  }, 60_000);
  test("redirects over HTTP_MAX_REDIRECTS, for an image and for config_url", async () => {
    const img = await failingCreate({ img_id: `${secretBase}/hop3/img/corrupt.gz` }, { HTTP_MAX_REDIRECTS: "2" });
    expect(cause(img)).toBe(`image URL ${base}/hop3/img/corrupt.gz: more than 2 redirects`);
    const cfg = await failingCreate({ img_id: "payload", config_url: `${secretBase}/hop3/config.json` }, { HTTP_MAX_REDIRECTS: "2" });
    expect(cause(cfg)).toBe(`config_url ${base}/hop3/config.json: more than 2 redirects`);
  }, 60_000);
  test("config_url document over 1 MiB, with and without Content-Length", async () => {
    for (const path of ["/big.json", "/big-chunked.json"]) {
      const r = await failingCreate({ img_id: "payload", config_url: `${secretBase}${path}` });
      expect(cause(r)).toBe(`config_url ${base}${path}: larger than 1048576 bytes`);
    }
  }, 60_000);
  test("connection dropped mid-body", async () => {
    const r = await failingCreate({ img_id: `${secretRawBase}/drop-body` });
    expect(r.output).toContain("Starting image copy");
    expect(cause(r)).toMatch(new RegExp(`^image URL ${rawBase}/drop-body: download (truncated, ${MiB} of ${32 * MiB} bytes|failed after ${MiB} bytes \\(.*\\))$`));
  }, 60_000);
});

describe("broken compressed streams", () => {
  for (const [tool, ext] of FORMATS) {
    for (const kind of ["truncated", "corrupt"] as const) {
      test(`${kind} ${tool}, over http and from IMAGE_DIR`, async () => {
        for (const imgId of [`${base}/img/${kind}.${ext}`, `${kind}.${ext}`]) {
          const r = await failingCreate({ img_id: imgId });
          expect(r.output).toContain(`image is ${tool}-compressed`);
          expect(cause(r)).toMatch(new RegExp(`^${tool} decompression of the image failed: \\S`));
        }
      }, 60_000);
    }
  }
});

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveImageSource } from "../../src/image/source.ts";
import type { ImageSource } from "../../src/image/sources/kind.ts";
import { SnfError } from "../../src/errors.ts";

let root: string;
let dir: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "snf-src-"));
  fs.chmodSync(root, 0o755);
  dir = path.join(root, "images");
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, "debian"), "debian image");
  fs.writeFileSync(path.join(dir, "old.diskdump"), "legacy 1");
  fs.writeFileSync(path.join(dir, "older-x86_64.diskdump"), "legacy 2");
  fs.writeFileSync(path.join(root, "secret"), "outside");
  fs.symlinkSync(path.join(root, "secret"), path.join(dir, "escape"));
  fs.symlinkSync("debian", path.join(dir, "alias"));
  fs.mkdirSync(path.join(dir, "adir"));
  fs.writeFileSync(path.join(dir, "locked"), "x", { mode: 0o000 });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const opts = () => ({ imageDir: dir, format: "diskdump" });
const text = async (s: ImageSource) => new Response(await s.open()).text();
async function fails(id: string, re: RegExp, o: Partial<Parameters<typeof resolveImageSource>[1]> = {}) {
  const e = await resolveImageSource(id, { ...opts(), ...o }).catch((e) => e);
  expect(e).toBeInstanceOf(SnfError);
  expect(e.message).toMatch(re);
  expect(e.message).not.toContain("\n");
  return e as SnfError;
}

describe("local source", () => {
  test("bare NAME, local://NAME and an inside symlink", async () => {
    for (const id of ["debian", "local://debian", "alias"]) {
      const s = await resolveImageSource(id, opts());
      expect(s.kind).toBe("local");
      expect(s.size).toBe(12);
      expect(await text(s)).toBe("debian image");
    }
  });
  test("legacy NAME.FORMAT and NAME-x86_64.FORMAT", async () => {
    expect(await text(await resolveImageSource("old", opts()))).toBe("legacy 1");
    expect(await text(await resolveImageSource("local://older", opts()))).toBe("legacy 2");
  });
  test("traversal ../x is refused", async () => {
    await fails("../secret", /outside IMAGE_DIR/);
    await fails("local://../secret", /outside IMAGE_DIR/);
    await fails("local:///etc/passwd", /outside IMAGE_DIR/);
  });
  test("a symlink escaping IMAGE_DIR is refused", async () => {
    await fails("escape", /resolves to .*secret, outside IMAGE_DIR/);
  });
  test("missing lists what was tried", async () => {
    await fails("nothing", /^image nothing not found in IMAGE_DIR .* \(tried: nothing, nothing\.diskdump, nothing-x86_64\.diskdump\)$/);
  });
  test("a directory is not an image; a missing IMAGE_DIR is named", async () => {
    await fails("adir", /not a regular file/);
    await fails("debian", /IMAGE_DIR .* is not accessible/, { imageDir: path.join(root, "nope") });
  });
  test("unreadable image (as an unprivileged user)", async () => {
    const script = path.join(root, "probe.ts");
    const src = path.resolve(import.meta.dir, "../../src/image/source.ts");
    fs.writeFileSync(
      script,
      `import { resolveImageSource } from ${JSON.stringify(src)};
       try { await resolveImageSource("locked", { imageDir: ${JSON.stringify(dir)}, format: "diskdump" }); console.log("OPENED"); }
       catch (e) { console.log(e.name + ": " + e.message); }`,
    );
    fs.chmodSync(script, 0o644);
    const p = Bun.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bun", script], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, HOME: root, BUN_INSTALL_CACHE_DIR: root },
    });
    const out = await new Response(p.stdout).text();
    await p.exited;
    expect(out.trim()).toMatch(/^SnfError: image locked is not readable: .*\(EACCES\)$/);
  });
  test("null source", async () => {
    const s = await resolveImageSource("null", opts());
    expect(s.kind).toBe("null");
    expect(s.size).toBe(0);
    expect(await text(s)).toBe("");
  });
  test("unsupported scheme", async () => {
    await fails("ftp://x/y", /unsupported image source "ftp:"/);
    await fails("  ", /empty/);
  });
});

// ---------------------------------------------------------------------------

const body = (() => {
  const b = new Uint8Array(2 * 1024 * 1024 + 3);
  crypto.getRandomValues(b.subarray(0, 65536));
  for (let i = 65536; i < b.length; i++) b[i] = i & 0xff;
  return b;
})();
let server: ReturnType<typeof Bun.serve>;
let base: string;
const seenAuth: (string | null)[] = [];

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const u = new URL(req.url);
      seenAuth.push(req.headers.get("authorization"));
      const m = /^\/hop(\d+)$/.exec(u.pathname);
      if (m) {
        const n = Number(m[1]);
        return new Response(null, { status: 302, headers: { location: n > 1 ? `/hop${n - 1}` : "/plain" } });
      }
      switch (u.pathname) {
        case "/plain":
          return new Response(body, { headers: { "content-length": String(body.length) } });
        case "/nohead":
          if (req.method === "HEAD") return new Response(null, { status: 405 });
          return new Response(body);
        case "/chunked": {
          let off = 0;
          return new Response(
            new ReadableStream({
              pull(c) {
                if (off >= body.length) return c.close();
                c.enqueue(body.slice(off, (off += 100000)));
              },
            }),
          );
        }
        case "/private":
          if (req.headers.get("authorization") !== "Basic " + btoa("user:s3cret")) return new Response("no", { status: 401 });
          return new Response(body);
        case "/loop":
          return new Response(null, { status: 301, headers: { location: "/loop" } });
        default:
          return new Response("nope", { status: 404 });
      }
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(() => server.stop(true));

/** Raw TCP server that promises `len` bytes and cuts the connection half way. */
function cutServer(len: number) {
  return Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(sock) {
        const head = `HTTP/1.1 200 OK\r\nContent-Length: ${len}\r\nConnection: close\r\n\r\n`;
        sock.write(head);
        sock.write(body.subarray(0, len >> 1));
        setTimeout(() => sock.end(), 50);
      },
    },
  });
}

const bytes = async (s: ImageSource) => new Uint8Array(await new Response(await s.open()).arrayBuffer());

describe("http source", () => {
  test("plain: size from Content-Length, body intact", async () => {
    const s = await resolveImageSource(`${base}/plain`, opts());
    expect(s.kind).toBe("http");
    expect(s.size).toBe(body.length);
    expect(Bun.hash(await bytes(s))).toBe(Bun.hash(body));
  });
  test("chunked, no Content-Length: size unknown, body intact", async () => {
    const s = await resolveImageSource(`${base}/chunked`, opts());
    expect(s.size).toBeNull();
    expect(Bun.hash(await bytes(s))).toBe(Bun.hash(body));
  });
  test("server refusing HEAD falls back to GET", async () => {
    const s = await resolveImageSource(`${base}/nohead`, opts());
    expect(Bun.hash(await bytes(s))).toBe(Bun.hash(body));
  });
  test("redirect chain within the limit", async () => {
    const s = await resolveImageSource(`${base}/hop3`, opts());
    expect(s.display).toBe(`${base}/hop3`);
    expect(Bun.hash(await bytes(s))).toBe(Bun.hash(body));
  });
  test("too long a redirect chain, and a redirect loop", async () => {
    await fails(`${base}/hop6`, /more than 5 redirects/);
    await fails(`${base}/hop3`, /more than 2 redirects/, { http: { maxRedirects: 2, stallMs: 60_000 } });
    await fails(`${base}/loop`, /more than 5 redirects/);
  });
  test("404 fails at resolve time", async () => {
    await fails(`${base}/missing.img`, /image URL http:\/\/127\.0\.0\.1:\d+\/missing\.img: HTTP 404/);
  });
  test("unreachable host fails at resolve time", async () => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    await fails(`http://127.0.0.1:${port}/x`, /cannot reach image URL/);
  });
  test("credentials go as Basic auth and never appear in display or errors", async () => {
    const url = new URL(`${base}/private`);
    url.username = "user";
    url.password = "s3cret";
    const s = await resolveImageSource(url.href, opts());
    expect(s.display).not.toContain("s3cret");
    expect(Bun.hash(await bytes(s))).toBe(Bun.hash(body));
    url.password = "wrong";
    url.pathname = "/private";
    const e = await fails(url.href + "?token=abc", /HTTP 401/);
    expect(e.message).not.toContain("wrong");
    expect(e.message).not.toContain("abc");
  });
  test("connection cut half way: one-line error naming the URL", async () => {
    const l = cutServer(body.length);
    try {
      const s = await resolveImageSource(`http://user:pw@127.0.0.1:${l.port}/cut.img`, opts());
      const e = await bytes(s).catch((e) => e);
      expect(e).toBeInstanceOf(SnfError);
      expect(e.message).toMatch(new RegExp(`http://127\\.0\\.0\\.1:${l.port}/cut\\.img`));
      expect(e.message).not.toContain("pw@");
      expect(e.message).not.toContain("\n");
    } finally {
      l.stop(true);
    }
  });
});

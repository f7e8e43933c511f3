/**
 * src/net/fetch.ts, the one HTTP client, against real servers on 127.0.0.1:
 * Bun.serve for well-behaved answers, raw TCP listeners for servers that
 * stall or hang up. Stall limits here are a fraction of a second.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server, TCPSocketListener } from "bun";
import { SnfError } from "../../src/errors.ts";
import { parseConfig } from "../../src/config.ts";
import { HttpStatusError, fetchDocument, fetchLimits, openUrl, redactUrl, type FetchOptions } from "../../src/net/fetch.ts";

const STALL_MS = 300;
const opts = (o: Partial<FetchOptions> = {}): FetchOptions => ({ what: "test URL", maxRedirects: 5, stallMs: STALL_MS, ...o });
const KiB = 1024;
const big = new Uint8Array(16 * 1024 * KiB).map((_, i) => i % 251);

let dir: string;
let a: Server<undefined>;
let b: Server<undefined>;
let aBase: string;
let bBase: string;
const seenAuth: Record<string, string | null> = {};
const listeners: TCPSocketListener[] = [];

/** A raw server: `onRequest` gets the socket once the request arrived. */
function rawServer(onRequest: (s: { write(d: string | Uint8Array): void; end(d?: string | Uint8Array): void }) => void): string {
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s) {
        onRequest(s);
      },
    },
  });
  listeners.push(l);
  return `http://127.0.0.1:${l.port}`;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "snf-fetch-"));
  writeFileSync(join(dir, "secret.json"), '{"img_passwd":"from-node-file"}');
  b = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      seenAuth[`b${new URL(req.url).pathname}`] = req.headers.get("authorization");
      return new Response("on b");
    },
  });
  bBase = `http://127.0.0.1:${b.port}`;
  a = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const u = new URL(req.url);
      seenAuth[`a${u.pathname}`] = req.headers.get("authorization");
      const hop = /^\/hop(\d+)$/.exec(u.pathname);
      if (hop) return Number(hop[1]) > 0 ? Response.redirect(`/hop${Number(hop[1]) - 1}`, 302) : new Response("end of hops");
      switch (u.pathname) {
        case "/doc":
          return new Response("0123456789");
        case "/same":
          return Response.redirect("/doc", 302);
        case "/other":
          return Response.redirect(`${bBase}/landing`, 302);
        case "/to-file":
          return new Response(null, { status: 302, headers: { location: `file://${dir}/secret.json` } });
        case "/to-ftp":
          return new Response(null, { status: 301, headers: { location: "ftp://127.0.0.1/x" } });
        case "/big":
          return new Response(big);
        case "/big-chunked":
          return new Response(
            new ReadableStream({
              start(c) {
                for (let i = 0; i < big.length; i += 64 * KiB) c.enqueue(big.slice(i, i + 64 * KiB));
                c.close();
              },
            }),
          );
        default:
          return new Response("nope", { status: 404 });
      }
    },
  });
  aBase = `http://127.0.0.1:${a.port}`;
});
afterAll(() => {
  a?.stop(true);
  b?.stop(true);
  for (const l of listeners) l.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<SnfError> {
  const e = await p.then(
    () => null,
    (e) => e,
  );
  expect(e).toBeInstanceOf(SnfError);
  expect((e as Error).message).not.toContain("\n");
  return e as SnfError;
}
const text = async (url: string, o?: Partial<FetchOptions>) => new TextDecoder().decode(await fetchDocument(url, { ...opts(o), maxBytes: 1024 * KiB }));

describe("redactUrl: the one way a URL is printed", () => {
  test("no user info, no query, no fragment", () => {
    expect(redactUrl("https://user:s3cret@example.org:8443/img/x.diskdump?token=abc#frag")).toBe("https://example.org:8443/img/x.diskdump?…");
    expect(redactUrl(new URL("http://h/p"))).toBe("http://h/p");
    expect(redactUrl("not a url at all s3cret")).toBe("<invalid URL>");
  });
});

describe("limits from the config", () => {
  test("HTTP_TIMEOUT (default 60 s, duration syntax) and HTTP_MAX_REDIRECTS", () => {
    expect(fetchLimits(parseConfig("", null))).toEqual({ maxRedirects: 5, stallMs: 60_000 });
    expect(fetchLimits(parseConfig('HTTP_TIMEOUT="2m"\nHTTP_MAX_REDIRECTS=0', null))).toEqual({ maxRedirects: 0, stallMs: 120_000 });
    expect(() => parseConfig("HTTP_TIMEOUT=0", null)).toThrow(/HTTP_TIMEOUT must be at least 1 second/);
  });
});

describe("schemes and redirects", () => {
  test("only http(s) is fetched: file:// and others refused before any read", async () => {
    for (const url of [`file://${dir}/secret.json`, "ftp://127.0.0.1/x", "data:,{}"]) {
      const e = await failure(text(url));
      expect(e.message).toMatch(/only http:\/\/ and https:\/\/ URLs are fetched/);
      expect(e.message).not.toContain("from-node-file");
    }
  });
  test("a redirect to file:// (or ftp://) is refused and the file is never read", async () => {
    const e = await failure(text(`${aBase}/to-file`));
    expect(e.message).toBe(`test URL ${aBase}/to-file redirects to file: (only http and https are followed)`);
    expect((await failure(openUrl(`${aBase}/to-ftp`, opts()))).message).toMatch(/redirects to ftp:/);
  });
  test("at most maxRedirects hops", async () => {
    expect(await text(`${aBase}/hop3`, { maxRedirects: 3 })).toBe("end of hops");
    expect((await failure(text(`${aBase}/hop3`, { maxRedirects: 2 }))).message).toBe(`test URL ${aBase}/hop3: more than 2 redirects`);
    expect((await failure(text(`${aBase}/hop1`, { maxRedirects: 0 }))).message).toMatch(/more than 0 redirects/);
  });
  test("credentials go to the URL's origin only, never into a message", async () => {
    const withCreds = (path: string) => `http://admin:s3cret@127.0.0.1:${a.port}${path}?token=t0k3n`;
    expect(await text(withCreds("/same"))).toBe("0123456789");
    expect(seenAuth["a/doc"]).toBe(`Basic ${btoa("admin:s3cret")}`);
    expect(await text(withCreds("/other"))).toBe("on b");
    expect(seenAuth["a/other"]).toBe(`Basic ${btoa("admin:s3cret")}`);
    expect(seenAuth["b/landing"]).toBeNull();
    const e = await failure(text(withCreds("/missing")));
    expect(e).toBeInstanceOf(HttpStatusError);
    expect((e as HttpStatusError).status).toBe(404);
    expect(e.message).toBe(`test URL http://127.0.0.1:${a.port}/missing?…: HTTP 404 Not Found`);
  });
  test("hostile status lines: one bounded line, no control characters, no query", async () => {
    const long = rawServer((s) => s.end(`HTTP/1.1 500 ${"A".repeat(5000)}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`));
    const e1 = await failure(openUrl(`${long}/x?token=t0k3n`, opts()));
    expect(e1.message).toStartWith(`test URL ${long}/x?…: HTTP 500 AAAA`);
    expect(e1.message.length).toBeLessThan(200);
    // Bun refuses a control character in the reason phrase; its error quotes the URL, query and all
    const esc = rawServer((s) => s.end("HTTP/1.1 500 \x1b[31mfake\x1b[0m\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"));
    const e2 = await failure(openUrl(`${esc}/x?token=t0k3n`, opts()));
    expect(e2.message).toMatch(new RegExp(`test URL ${esc}/x\\?…`));
    expect(e2.message).not.toContain("t0k3n");
    expect(e2.message).not.toMatch(/[\x00-\x1f\x7f]/);
  });
  test("nothing listening: one line naming the URL", async () => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = l.port;
    l.stop(true);
    expect((await failure(text(`http://u:pw@127.0.0.1:${port}/x`))).message).toMatch(new RegExp(`^cannot reach test URL http://127\\.0\\.0\\.1:${port}/x \\(`));
  });
});

describe("stall limit and the caller's signal", () => {
  test("no response head: fails after the limit, naming URL and limit", async () => {
    const url = rawServer(() => {});
    const e = await failure(openUrl(`${url}/slow?k=v`, opts()));
    expect(e.message).toBe(`test URL ${url}/slow?…: no response for 0.3 s (HTTP_TIMEOUT)`);
  });
  test("head and part of the body, then silence: the body read fails", async () => {
    const url = rawServer((s) => {
      s.write("HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n");
      s.write(new Uint8Array(1000));
    });
    const res = await openUrl(`${url}/img`, opts());
    expect(res.length).toBe(100000);
    const e = await failure(new Response(res.body).arrayBuffer());
    expect(e.message).toBe(`test URL ${url}/img: download stalled, no data for 0.3 s after 1000 bytes (HTTP_TIMEOUT)`);
    // the same for a document
    expect((await failure(text(`${url}/doc`))).message).toMatch(/download stalled, no data for 0\.3 s after 1000 bytes/);
  });
  test("a slow consumer is not a stalled server", async () => {
    const res = await openUrl(`${aBase}/big`, opts());
    const reader = res.body.getReader();
    let got = (await reader.read()).value!.length;
    await Bun.sleep(STALL_MS * 3);
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      got += r.value.length;
      await Bun.sleep(1);
    }
    expect(got).toBe(big.length);
  });
  test("a server trickling bytes slower than the limit overall but never silent for that long passes", async () => {
    const url = rawServer((s) => {
      s.write("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n");
      let n = 0;
      const t = setInterval(() => {
        s.write("x");
        if (++n === 6) {
          clearInterval(t);
          s.end();
        }
      }, STALL_MS / 3);
    });
    expect(await text(`${url}/trickle`)).toBe("xxxxxx");
  });
  test("the caller's signal interrupts a wait the stall limit would allow", async () => {
    const url = rawServer(() => {});
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error("interrupted by SIGTERM")), 100);
    const e = await failure(openUrl(`${url}/x`, opts({ stallMs: 60_000, signal: ac.signal })));
    expect(e.message).toBe(`test URL ${url}/x: download interrupted`);

    const url2 = rawServer((s) => s.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab"));
    const ac2 = new AbortController();
    const res = await openUrl(`${url2}/y`, opts({ stallMs: 60_000, signal: ac2.signal }));
    setTimeout(() => ac2.abort(new Error("interrupted by SIGTERM")), 100);
    expect((await failure(new Response(res.body).text())).message).toBe(`test URL ${url2}/y: download interrupted`);
  });
});

describe("bodies and documents", () => {
  test("a connection cut before Content-Length is reached", async () => {
    const url = rawServer((s) => {
      s.write("HTTP/1.1 200 OK\r\ncontent-length: 5000\r\nconnection: close\r\n\r\n");
      s.write(new Uint8Array(2000));
      setTimeout(() => s.end(), 20);
    });
    const e = await failure(text(`${url}/cut`));
    expect(e.message).toMatch(new RegExp(`^test URL ${url}/cut: download (truncated, 2000 of 5000 bytes|failed after 2000 bytes)`));
  });
  test("document size cap: from Content-Length, and while reading a chunked body", async () => {
    const cap = { ...opts(), maxBytes: 1024 * KiB };
    expect((await fetchDocument(`${aBase}/doc`, { ...cap, maxBytes: 10 })).length).toBe(10);
    expect((await failure(fetchDocument(`${aBase}/doc`, { ...cap, maxBytes: 9 }))).message).toBe(`test URL ${aBase}/doc: larger than 9 bytes`);
    expect((await failure(fetchDocument(`${aBase}/big`, cap))).message).toMatch(/larger than 1048576 bytes/);
    expect((await failure(fetchDocument(`http://u:pw@127.0.0.1:${a.port}/big-chunked`, cap))).message).toBe(`test URL ${aBase}/big-chunked: larger than 1048576 bytes`);
  });
});

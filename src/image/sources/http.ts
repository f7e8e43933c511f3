/**
 * http:// and https:// images through Bun's fetch. Resolving sends HEAD
 * (GET when the server refuses HEAD) so that a 404 or an unreachable host
 * fails before the disk is touched. Redirects are followed by hand, at most
 * maxRedirects, and credentials from the URL (sent as Basic auth) are dropped
 * when a redirect leaves the origin. Errors and `display` name the URL without
 * user info or query string. A body that ends before Content-Length, or a
 * connection cut half way, is an error.
 */
import { SnfError, errorMessage } from "../../errors.ts";
import type { ImageSource, ResolveOptions, SourceKind } from "../source.ts";

const DEFAULT_MAX_REDIRECTS = 5;
const CONNECT_TIMEOUT_MS = 60_000;

/** URL for people: no user info, no query (may hold tokens), no fragment. */
export function safeUrl(u: URL | string): string {
  let url: URL;
  try {
    url = new URL(String(u));
  } catch {
    return "<invalid URL>";
  }
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? "?…" : ""}`;
}

interface Target {
  url: URL;
  auth: string | null;
}

function split(raw: string): Target {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SnfError(`invalid image URL ${safeUrl(raw)}`);
  }
  let auth: string | null = null;
  if (url.username || url.password) {
    auth = "Basic " + btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
    url.username = "";
    url.password = "";
  }
  url.hash = "";
  return { url, auth };
}

function reason(e: unknown): string {
  const code = (e as { code?: string })?.code;
  // Bun's fetch errors carry the code in the message already and end with a hint meant for developers.
  const msg = errorMessage(e).replace(/\s*For more information, pass `verbose: true`.*$/s, "").replace(/\.$/, "");
  return code && !msg.startsWith(code) ? `${code}: ${msg}` : msg;
}

/** fetch with hand-made bounded redirects; returns a 2xx response or throws SnfError. */
async function request(
  start: Target,
  method: "HEAD" | "GET",
  maxRedirects: number,
  signal?: AbortSignal,
): Promise<{ res: Response; final: Target }> {
  let t = start;
  for (let hop = 0; ; hop++) {
    let res: Response;
    const headers: Record<string, string> = { "user-agent": "snf-image" };
    if (t.auth) headers.authorization = t.auth;
    // The timeout covers connecting and the response head only, not the body.
    const head = new AbortController();
    const timer = setTimeout(() => head.abort(new Error("no response within 60 s")), CONNECT_TIMEOUT_MS);
    try {
      res = await fetch(t.url, {
        method,
        headers,
        redirect: "manual",
        signal: signal ? AbortSignal.any([signal, head.signal]) : head.signal,
        decompress: false,
      } as RequestInit);
    } catch (e) {
      if (signal?.aborted) throw new SnfError(`download of ${safeUrl(t.url)} interrupted`);
      throw new SnfError(`cannot reach image URL ${safeUrl(t.url)} (${head.signal.aborted ? "no response within 60 s" : reason(e)})`);
    } finally {
      clearTimeout(timer);
    }
    if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
      await res.body?.cancel().catch(() => {});
      if (hop >= maxRedirects) {
        throw new SnfError(`image URL ${safeUrl(start.url)}: more than ${maxRedirects} redirects`);
      }
      let next: URL;
      try {
        next = new URL(res.headers.get("location")!, t.url);
      } catch {
        throw new SnfError(`image URL ${safeUrl(t.url)}: invalid redirect location`);
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new SnfError(`image URL ${safeUrl(t.url)} redirects to unsupported ${next.protocol}`);
      }
      const n = split(next.href);
      t = { url: n.url, auth: n.auth ?? (next.origin === t.url.origin ? t.auth : null) };
      continue;
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw new SnfError(`image URL ${safeUrl(t.url)}: HTTP ${res.status} ${res.statusText}`.trim());
    }
    return { res, final: t };
  }
}

function lengthOf(res: Response): number | null {
  const v = res.headers.get("content-length");
  if (v === null || !/^\d+$/.test(v.trim())) return null;
  return Number(v);
}

/** Counts bytes, turns a short body or a cut connection into one SnfError. */
function checked(body: ReadableStream<Uint8Array>, expected: number | null, shown: string): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let got = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        let r;
        try {
          r = await reader.read();
        } catch (e) {
          c.error(new SnfError(`download of ${shown} failed after ${got} bytes (${reason(e)})`));
          return;
        }
        if (r.done) {
          if (expected !== null && got !== expected) {
            c.error(new SnfError(`download of ${shown} truncated: ${got} of ${expected} bytes`));
          } else c.close();
          return;
        }
        got += r.value.length;
        c.enqueue(r.value);
      },
      cancel(why) {
        return reader.cancel(why);
      },
    },
    { highWaterMark: 4 },
  );
}

export async function resolveHttp(id: string, o: ResolveOptions): Promise<ImageSource> {
  const maxRedirects = o.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const start = split(id);
  let probe: { res: Response; final: Target };
  let pending: Response | null = null;
  try {
    probe = await request(start, "HEAD", maxRedirects);
  } catch (e) {
    // Some servers refuse HEAD; a GET decides (and its body is kept for open()).
    if (!(e instanceof SnfError) || !/HTTP (400|403|405|501)/.test(e.message)) throw e;
    probe = await request(start, "GET", maxRedirects);
    pending = probe.res;
  }
  // A HEAD reply for a chunked resource often says "content-length: 0": not a size.
  const headLen = lengthOf(probe.res);
  const size = pending === null && headLen === 0 ? null : headLen;
  const final = probe.final;
  const display = safeUrl(start.url);
  const source: ImageSource = {
    kind: "http",
    display,
    size,
    async open(signal?: AbortSignal) {
      let res = pending;
      pending = null;
      if (!res) res = (await request(final, "GET", maxRedirects, signal)).res;
      const len = lengthOf(res);
      if (size !== null && len !== null && len !== size) {
        await res.body?.cancel().catch(() => {});
        throw new SnfError(`image URL ${display} changed size (${size} then ${len} bytes)`);
      }
      // The GET decides: a HEAD answer may carry a length (often 0) that a
      // chunked GET body does not have.
      source.size = len;
      if (!res.body) return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
      return checked(res.body, len, display);
    },
  };
  return source;
}

export const httpSource: SourceKind = {
  kind: "http",
  probe: (id) => /^https?:/i.test(id),
  resolve: resolveHttp,
};

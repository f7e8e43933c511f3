/**
 * The one HTTP client of snf-image: images, config_url and any other document
 * named by a URL go through here, so they share every rule.
 *
 * - http:// and https:// only, also for every redirect (never file:// or
 *   anything else Bun's fetch would read); at most `maxRedirects` hops,
 *   followed by hand.
 * - Credentials in the URL go as Basic auth, and only to the URL's own origin:
 *   a redirect to another origin drops them.
 * - A stall limit (HTTP_TIMEOUT) on every wait: connecting, the response head
 *   and each read of the body. The clock runs only while we wait for the
 *   server, never while the consumer (disk, decompressor) is busy. The
 *   caller's AbortSignal (SIGTERM) applies as well.
 * - Every message names the URL through `redactUrl` (no user info, no query)
 *   and is one line.
 *
 * API: `openUrl` (a response with a guarded streaming body, for images) and
 * `fetchDocument` (a whole document, bounded in size, for config_url and
 * answer files).
 */
import type { Config } from "../config.ts";
import { SnfError, errorMessage, errnoOf } from "../errors.ts";
import { oneLine, truncateBytes } from "../protocol.ts";

export interface FetchLimits {
  /** Redirects followed at most (HTTP_MAX_REDIRECTS). */
  maxRedirects: number;
  /** Longest wait for any byte from the server, in ms (HTTP_TIMEOUT). */
  stallMs: number;
}

export interface FetchOptions extends FetchLimits {
  /** What the URL is, for messages: "image URL", "config_url", "os_answer_file". */
  what: string;
  /** The caller's abort (SIGTERM); applies together with the stall limit. */
  signal?: AbortSignal;
}

export function fetchLimits(config: Pick<Config, "HTTP_MAX_REDIRECTS" | "HTTP_TIMEOUT">): FetchLimits {
  return { maxRedirects: config.HTTP_MAX_REDIRECTS, stallMs: config.HTTP_TIMEOUT * 1000 };
}

/** A URL for people and logs: no user info, no query (it may hold tokens), no fragment. */
export function redactUrl(u: string | URL): string {
  let url: URL;
  try {
    url = new URL(String(u));
  } catch {
    return "<invalid URL>";
  }
  return `${url.protocol}//${url.host}${url.pathname}${url.search ? "?…" : ""}`;
}

/** A URL without its user info, and the credentials that go with it. */
export interface HttpTarget {
  readonly url: URL;
  readonly auth: string | null;
}

/** A non-2xx answer; `status` lets a caller decide (e.g. retry HEAD as GET). */
export class HttpStatusError extends SnfError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface HttpResponse {
  /** Where the redirects ended, with the credentials still valid there. */
  final: HttpTarget;
  status: number;
  headers: Headers;
  /** Content-Length, or null when absent. */
  length: number | null;
  /**
   * The body. Each read is guarded by the stall limit and the signal; a body
   * shorter than Content-Length or a cut connection errors the stream. Every
   * error is one SnfError line.
   */
  body: ReadableStream<Uint8Array>;
}

const isHttp = (u: URL) => u.protocol === "http:" || u.protocol === "https:";
const seconds = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;

export function httpTarget(raw: string, what: string): HttpTarget {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SnfError(`invalid ${what} ${redactUrl(raw)}`);
  }
  if (!isHttp(url)) throw new SnfError(`${what} ${redactUrl(url)}: only http:// and https:// URLs are fetched`);
  let auth: string | null = null;
  if (url.username || url.password) {
    auth = "Basic " + btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
    url.username = "";
    url.password = "";
  }
  url.hash = "";
  return { url, auth };
}

/** Why a request or read failed, in one line, the URL (should it appear) redacted. */
function reason(e: unknown, url: URL): string {
  const code = errnoOf(e);
  // Bun's fetch errors carry the code in the message already and end with a hint meant for developers.
  const msg = errorMessage(e)
    .replace(/\s*For more information, pass `verbose: true`.*$/s, "")
    .replace(/\.$/, "")
    .split(url.href)
    .join(redactUrl(url));
  return truncateBytes(oneLine(code && !msg.startsWith(code) ? `${code}: ${msg}` : msg), 200);
}

/**
 * One request's clock and abort: `wait` races a promise against the stall
 * limit and the caller's signal; losing either aborts the request.
 */
class Guard {
  private readonly ctl = new AbortController();
  readonly signal: AbortSignal;
  constructor(
    private readonly o: FetchOptions,
    /** "<what> <redacted URL>", the start of every message. */
    private readonly label: string,
  ) {
    this.signal = o.signal ? AbortSignal.any([o.signal, this.ctl.signal]) : this.ctl.signal;
  }
  abort(): void {
    this.ctl.abort(new Error("aborted"));
  }
  async wait<T>(p: Promise<T>, stalled: () => string): Promise<T> {
    const sig = this.o.signal;
    if (sig?.aborted) throw this.interrupted();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const lost = new Promise<never>((_, reject) => {
      // Settle first: aborting rejects `p` at once, and the race must name the cause.
      timer = setTimeout(() => {
        reject(new SnfError(stalled()));
        this.abort();
      }, this.o.stallMs);
      onAbort = () => {
        reject(this.interrupted());
        this.abort();
      };
      sig?.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([p, lost]);
    } finally {
      clearTimeout(timer);
      if (onAbort) sig?.removeEventListener("abort", onAbort);
    }
  }
  interrupted(): SnfError {
    return new SnfError(`${this.label}: download interrupted`);
  }
}

function lengthOf(headers: Headers): number | null {
  const v = headers.get("content-length");
  if (v === null || !/^\d+$/.test(v.trim())) return null;
  return Number(v);
}

/**
 * GET or HEAD `url` (a string, or the `final` target of an earlier response),
 * following redirects by the rules above. Resolves with a 2xx response; any
 * other outcome is one SnfError (HttpStatusError for a non-2xx status).
 */
export async function openUrl(url: string | HttpTarget, o: FetchOptions & { method?: "GET" | "HEAD"; range?: { start: number; end: number } }): Promise<HttpResponse> {
  const start = typeof url === "string" ? httpTarget(url, o.what) : url;
  const method = o.method ?? "GET";
  const limit = seconds(o.stallMs);
  let t = start;
  for (let hop = 0; ; hop++) {
    const shown = redactUrl(t.url);
    const label = `${o.what} ${shown}`;
    const guard = new Guard(o, label);
    const headers: Record<string, string> = { "user-agent": "snf-image", "accept-encoding": "identity" };
    if (t.auth) headers.authorization = t.auth;
    if (o.range) headers.range = `bytes=${o.range.start}-${o.range.end}`;
    let res: Response;
    try {
      res = await guard.wait(
        fetch(t.url, { method, headers, redirect: "manual", signal: guard.signal, decompress: false } as RequestInit),
        () => `${label}: no response for ${limit} (HTTP_TIMEOUT)`,
      );
    } catch (e) {
      if (e instanceof SnfError) throw e;
      throw new SnfError(`cannot reach ${label} (${reason(e, t.url)})`);
    }
    const drop = () => res.body?.cancel().catch(() => {});
    if (res.status >= 300 && res.status < 400 && res.headers.has("location")) {
      void drop();
      if (hop >= o.maxRedirects) throw new SnfError(`${o.what} ${redactUrl(start.url)}: more than ${o.maxRedirects} redirects`);
      let next: URL;
      try {
        next = new URL(res.headers.get("location")!, t.url);
      } catch {
        throw new SnfError(`${label}: invalid redirect location`);
      }
      if (!isHttp(next)) throw new SnfError(`${label} redirects to ${next.protocol.slice(0, 16)} (only http and https are followed)`);
      const n = httpTarget(next.href, o.what);
      t = { url: n.url, auth: n.auth ?? (next.origin === t.url.origin ? t.auth : null) };
      continue;
    }
    if (res.status < 200 || res.status >= 300) {
      void drop();
      // The reason phrase comes from the server: one line, bounded.
      const phrase = truncateBytes(oneLine(res.statusText), 60);
      throw new HttpStatusError(`${label}: HTTP ${res.status} ${phrase}`.trim(), res.status);
    }
    const length = lengthOf(res.headers);
    return { final: t, status: res.status, headers: res.headers, length, body: guardedBody(res, guard, label, t.url, method === "HEAD" ? 0 : length, limit) };
  }
}

/** The response body, each read under the guard; short or cut bodies are errors. */
function guardedBody(res: Response, guard: Guard, label: string, url: URL, expected: number | null, limit: string): ReadableStream<Uint8Array> {
  if (!res.body) return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  const reader = res.body.getReader();
  let got = 0;
  const stop = () => {
    guard.abort();
    reader.cancel().catch(() => {});
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await guard.wait(reader.read(), () => `${label}: download stalled, no data for ${limit} after ${got} bytes (HTTP_TIMEOUT)`);
        } catch (e) {
          stop();
          c.error(e instanceof SnfError ? e : new SnfError(`${label}: download failed after ${got} bytes (${reason(e, url)})`));
          return;
        }
        if (r.done) {
          if (expected !== null && got !== expected) c.error(new SnfError(`${label}: download truncated, ${got} of ${expected} bytes`));
          else c.close();
          return;
        }
        got += r.value.length;
        c.enqueue(r.value);
      },
      cancel() {
        stop();
      },
    },
    { highWaterMark: 4 },
  );
}

/**
 * A whole document (config_url, an answer file): GET, at most `maxBytes`
 * (refused from Content-Length when it says so, else while reading).
 */
export async function fetchDocument(url: string, o: FetchOptions & { maxBytes: number }): Promise<Uint8Array> {
  const shownStart = redactUrl(url);
  const tooLarge = () => new SnfError(`${o.what} ${shownStart}: larger than ${o.maxBytes} bytes`);
  const res = await openUrl(url, { ...o, method: "GET" });
  if (res.length !== null && res.length > o.maxBytes) {
    await res.body.cancel().catch(() => {});
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    total += r.value.length;
    if (total > o.maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(r.value);
  }
  return Buffer.concat(chunks);
}

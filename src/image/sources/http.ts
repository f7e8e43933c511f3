/**
 * http:// and https:// images through the one HTTP client (src/net/fetch.ts:
 * redirects, credentials, stall limit, redacted URLs). Resolving sends HEAD
 * (GET when the server refuses HEAD) so that a 404 or an unreachable host
 * fails before the disk is touched; open() GETs where the redirects ended.
 * The body it returns carries the stall limit through to the disk writer.
 */
import { SnfError } from "../../errors.ts";
import { parseConfig } from "../../config.ts";
import { HttpStatusError, fetchLimits, httpTarget, openUrl, redactUrl, type FetchOptions, type HttpResponse, type HttpTarget } from "../../net/fetch.ts";
import type { ImageSource, RangeReader, ResolveOptions, SourceKind } from "./kind.ts";

const WHAT = "image URL";

export async function resolveHttp(id: string, o: ResolveOptions): Promise<ImageSource> {
  const net: FetchOptions = { what: WHAT, ...(o.http ?? fetchLimits(parseConfig("", null))), signal: o.signal };
  const start = httpTarget(id, WHAT);
  let probe: HttpResponse;
  let pending: HttpResponse | null = null;
  try {
    probe = await openUrl(start, { ...net, method: "HEAD" });
  } catch (e) {
    // Some servers refuse HEAD; a GET decides (and its body is kept for open()).
    if (!(e instanceof HttpStatusError) || ![400, 403, 405, 501].includes(e.status)) throw e;
    probe = pending = await openUrl(start, { ...net, method: "GET" });
  }
  // A HEAD reply for a chunked resource often says "content-length: 0": not a size.
  const size = pending === null && probe.length === 0 ? null : probe.length;
  const final = probe.final;
  const display = redactUrl(start.url);
  const source: ImageSource = {
    kind: "http",
    display,
    size,
    url: id,
    async open(signal?: AbortSignal) {
      let res = pending;
      pending = null;
      res ??= await openUrl(final, { ...net, method: "GET", signal });
      if (size !== null && res.length !== null && res.length !== size) {
        await res.body.cancel().catch(() => {});
        throw new SnfError(`${WHAT} ${display} changed size (${size} then ${res.length} bytes)`);
      }
      // The GET decides: a HEAD answer may carry a length (often 0) that a
      // chunked GET body does not have.
      source.size = res.length;
      return res.body;
    },
    ranges: (signal) => httpRanges(final, display, size, { ...net, signal }),
  };
  return source;
}

/**
 * Positional reads by Range requests (qcow2 images). A first one-byte request
 * learns the size and whether the server can; a server that answers a Range
 * request with anything but 206 and a matching Content-Range is refused.
 */
async function httpRanges(final: HttpTarget, display: string, size: number | null, net: FetchOptions): Promise<RangeReader> {
  const ctl = new AbortController();
  const signal = net.signal ? AbortSignal.any([net.signal, ctl.signal]) : ctl.signal;
  const get = async (pos: number, len: number): Promise<{ bytes: Uint8Array; total: number }> => {
    const res = await openUrl(final, { ...net, signal, range: { start: pos, end: pos + len - 1 } });
    const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("content-range")?.trim() ?? "");
    if (res.status !== 206 || !cr) {
      await res.body.cancel().catch(() => {});
      throw new SnfError(`image URL ${display}: the server does not answer Range requests (HTTP ${res.status}), which qcow2 images need; serve it from one that does or convert it to raw`);
    }
    if (Number(cr[1]) !== pos || Number(cr[2]) !== pos + len - 1) {
      await res.body.cancel().catch(() => {});
      throw new SnfError(`image URL ${display}: asked for bytes ${pos}-${pos + len - 1}, got ${cr[1]}-${cr[2]}`);
    }
    const bytes = new Uint8Array(len);
    let got = 0;
    const reader = res.body.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      if (got + r.value.length > len) {
        await reader.cancel().catch(() => {});
        throw new SnfError(`image URL ${display}: more than the ${len} bytes asked for`);
      }
      bytes.set(r.value, got);
      got += r.value.length;
    }
    if (got !== len) throw new SnfError(`image URL ${display}: ${got} of the ${len} bytes asked for`);
    return { bytes, total: Number(cr[3]) };
  };
  const first = await get(0, 1);
  const total = first.total;
  if (size !== null && total !== size) throw new SnfError(`image URL ${display} changed size (${size} then ${total} bytes)`);
  let closed = false;
  return {
    size: total,
    async read(pos, len) {
      if (closed) throw new SnfError(`download of ${display} interrupted`);
      const r = await get(pos, len);
      if (r.total !== total) throw new SnfError(`image URL ${display} changed size (${total} then ${r.total} bytes)`);
      return r.bytes;
    },
    async close() {
      closed = true;
      ctl.abort(new Error("closed"));
    },
  };
}

export const httpSource: SourceKind = {
  kind: "http",
  probe: (id) => /^https?:/i.test(id),
  resolve: resolveHttp,
};

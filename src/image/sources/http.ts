/**
 * http:// and https:// images through the one HTTP client (src/net/fetch.ts:
 * redirects, credentials, stall limit, redacted URLs). Resolving sends HEAD
 * (GET when the server refuses HEAD) so that a 404 or an unreachable host
 * fails before the disk is touched; open() GETs where the redirects ended.
 * The body it returns carries the stall limit through to the disk writer.
 */
import { SnfError } from "../../errors.ts";
import { parseConfig } from "../../config.ts";
import { HttpStatusError, fetchLimits, httpTarget, openUrl, redactUrl, type FetchOptions, type HttpResponse } from "../../net/fetch.ts";
import type { ImageSource, ResolveOptions, SourceKind } from "../source.ts";

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
  };
  return source;
}

export const httpSource: SourceKind = {
  kind: "http",
  probe: (id) => /^https?:/i.test(id),
  resolve: resolveHttp,
};

/**
 * Images in IMAGE_DIR: `local://NAME`, `file://NAME` (deprecated) or a bare
 * NAME without ':'. Legacy file names NAME.FORMAT and NAME-x86_64.FORMAT are
 * tried after NAME, with a deprecation warning. The file is opened while
 * resolving and the opened file's real path must lie inside
 * realpath(IMAGE_DIR), so neither `../` nor a symlink can escape it. A
 * NAME.meta file next to the image (snf-image-creator's) gives default
 * properties (../meta.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { SnfError, errnoOf, causeOf } from "../../errors.ts";
import { onCleanup } from "../../cleanup.ts";
import { log } from "../../log.ts";
import { O_CLOEXEC } from "../../disk/libc.ts";
import { markFileBacked, unmarkFileBacked } from "../../disk/input.ts";
import type { ImageSource, ResolveOptions, SourceKind } from "./kind.ts";
import { fdStream } from "./read-stream.ts";
import { META_SUFFIX, readImageMeta } from "../meta.ts";

function nameOf(id: string): string {
  const m = /^(local|file):\/\/(.*)$/i.exec(id);
  if (m) {
    if (m[1]!.toLowerCase() === "file") log.warn(`img_id ${id}: file:// is deprecated, use local://`);
    return m[2]!;
  }
  return id;
}


export async function resolveLocal(id: string, o: ResolveOptions): Promise<ImageSource> {
  const name = nameOf(id);
  if (!name || name.includes("\0")) throw new SnfError(`invalid local image name "${name}"`);
  let dir: string;
  try {
    dir = fs.realpathSync(o.imageDir);
  } catch (e) {
    throw new SnfError(`IMAGE_DIR ${o.imageDir} is not accessible (${causeOf(e)})`);
  }
  const candidates = [name, `${name}.${o.format}`, `${name}-x86_64.${o.format}`];
  for (const [i, cand] of candidates.entries()) {
    const p = path.resolve(dir, cand);
    let real: string;
    try {
      real = fs.realpathSync(p);
    } catch (e) {
      if (errnoOf(e) === "ENOENT" || errnoOf(e) === "ENOTDIR") continue;
      throw new SnfError(`image ${name}: cannot resolve ${p} (${causeOf(e)})`);
    }
    if (!real.startsWith(dir + path.sep)) {
      throw new SnfError(`image ${name} resolves to ${real}, outside IMAGE_DIR ${dir}`);
    }
    if (i > 0) log.warn(`image ${name}: using legacy file name ${cand} (deprecated, name the file ${name})`);
    let fd: number;
    try {
      fd = fs.openSync(real, fs.constants.O_RDONLY | O_CLOEXEC | fs.constants.O_NOFOLLOW);
    } catch (e) {
      throw new SnfError(`image ${name} is not readable: ${real} (${causeOf(e)})`);
    }
    let closed = false;
    const close = () => {
      if (!closed) fs.closeSync(fd);
      closed = true;
      undo();
    };
    const undo = onCleanup(`close image ${real}`, close);
    const st = fs.fstatSync(fd);
    // The opened file itself must still be inside IMAGE_DIR (no race with a swapped symlink).
    const opened = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (!opened.startsWith(dir + path.sep)) {
      close();
      throw new SnfError(`image ${name} resolves to ${opened}, outside IMAGE_DIR ${dir}`);
    }
    if (!st.isFile()) {
      close();
      throw new SnfError(`image ${name} is not a regular file: ${real}`);
    }
    let properties: Record<string, string> | null;
    try {
      properties = readImageMeta(opened, dir);
    } catch (e) {
      close();
      throw e;
    }
    let opened1 = false;
    return {
      kind: "local",
      display: `local://${path.relative(dir, real)}`,
      size: st.size,
      ...(properties ? { properties, propertiesFrom: `${path.relative(dir, opened)}${META_SUFFIX}` } : {}),
      path: real,
      async open(signal?: AbortSignal) {
        if (opened1) throw new Error(`image ${name} opened twice`);
        opened1 = true;
        // Lazy: nothing is read until the first pull, so that openImage and
        // writeImage can take the file-backed fast path (pread into aligned
        // buffers) instead; cancel closes the fd either way.
        let inner: { read(): Promise<{ done: boolean; value?: Uint8Array }>; cancel(why?: unknown): Promise<void> } | null = null;
        const s: ReadableStream<Uint8Array> = new ReadableStream<Uint8Array>(
          {
            async pull(c) {
              if (!inner) unmarkFileBacked(s);
              inner ??= fdStream(fd, close, signal).getReader();
              try {
                const r = await inner.read();
                if (r.done || !r.value) c.close();
                else c.enqueue(r.value);
              } catch (e) {
                c.error(e);
              }
            },
            async cancel(why) {
              if (inner) await inner.cancel(why).catch(() => {});
              close();
            },
          },
          { highWaterMark: 0 },
        );
        return markFileBacked(s, { fd, size: st.size });
      },
    };
  }
  throw new SnfError(`image ${name} not found in IMAGE_DIR ${dir} (tried: ${candidates.join(", ")})`);
}

export const localSource: SourceKind = {
  kind: "local",
  probe: (id) => /^(local|file):\/\//i.test(id) || !id.includes(":"),
  resolve: resolveLocal,
};

/**
 * Paths inside the image, resolved the way the guest would see them.
 *
 * The image is hostile: any component of a path may be a symlink, absolute or
 * relative, possibly full of `..`. resolveInRoot() walks the path one
 * component at a time, reads each symlink itself and re-roots it at the image
 * root, and clamps `..` at the root, so the result is always a host path
 * inside `root`. Every file edit a task makes inside the image goes through
 * this module.
 *
 * The image is not changing under us (only the helper touches the disk), so
 * resolve-then-act is not racy here.
 */
import { randomBytes } from "./random.ts";
import * as fs from "node:fs";
import * as path from "node:path";

const MAX_SYMLINKS = 40;

export class UnsafePathError extends Error {}

/** Normalize a guest path to "/a/b/c" form (no "." or empty components; ".." kept). */
function components(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

/**
 * Host path of `guestPath` inside the image mounted at `root`.
 * - Symlinks in every component are followed relative to the image root.
 * - `..` never climbs above the root.
 * - Components that do not exist are appended as they are (they cannot be
 *   symlinks).
 * - followLast=false leaves a symlink in the final component unresolved
 *   (for unlink/rename of the link itself).
 */
export function resolveInRoot(root: string, guestPath: string, opts: { followLast?: boolean } = {}): string {
  const followLast = opts.followLast ?? true;
  const rootAbs = path.resolve(root);
  if (guestPath.includes("\0")) throw new UnsafePathError("path contains a NUL byte");
  let pending = components(guestPath);
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "..") {
      done.pop();
      continue;
    }
    const host = path.join(rootAbs, ...done, c);
    const isLast = pending.length === 0;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(host);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && (!isLast || followLast)) {
      if (++links > MAX_SYMLINKS) throw new UnsafePathError(`too many levels of symbolic links in ${guestPath}`);
      const target = fs.readlinkSync(host);
      if (target.startsWith("/")) done.length = 0;
      pending = [...components(target), ...pending];
      continue;
    }
    if (st === undefined) {
      // Missing: the rest cannot contain symlinks; only ".." needs care.
      done.push(c);
      for (const rest of pending) {
        if (rest === "..") done.pop();
        else done.push(rest);
      }
      pending = [];
      break;
    }
    done.push(c);
  }
  const out = path.join(rootAbs, ...done);
  if (out !== rootAbs && !out.startsWith(rootAbs + path.sep)) throw new UnsafePathError(`${guestPath} resolves outside the image`);
  return out;
}

/** Guest path of a host path inside root ("/" for the root itself). */
export function guestPathOf(root: string, hostPath: string): string {
  const rel = path.relative(path.resolve(root), hostPath);
  return rel === "" ? "/" : `/${rel}`;
}

export interface FileMeta {
  mode?: number;
  uid?: number;
  gid?: number;
}

/** stat of the resolved path (final symlink followed inside the root), or undefined if missing. */
export function statIn(root: string, guestPath: string): fs.Stats | undefined {
  try {
    return fs.statSync(resolveInRoot(root, guestPath));
  } catch {
    return undefined;
  }
}

/** lstat of a path inside the image, not following its final component, or undefined if missing. */
export function lstatIn(root: string, guestPath: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(resolveInRoot(root, guestPath, { followLast: false }));
  } catch {
    return undefined;
  }
}

/** Does a path exist in the image, not following a final symlink (so dangling links count)? */
export function lexistsIn(root: string, guestPath: string): boolean {
  return lstatIn(root, guestPath) !== undefined;
}

/** Target of a symlink inside the image (not followed), or undefined if it is not one. */
export function readLinkIn(root: string, guestPath: string): string | undefined {
  try {
    return fs.readlinkSync(resolveInRoot(root, guestPath, { followLast: false }));
  } catch {
    return undefined;
  }
}

/** Set owner and/or mode of an existing file or directory inside the image. */
export function setMetaIn(root: string, guestPath: string, meta: FileMeta): void {
  const host = resolveInRoot(root, guestPath);
  if (meta.uid !== undefined || meta.gid !== undefined) fs.chownSync(host, meta.uid ?? -1, meta.gid ?? -1);
  if (meta.mode !== undefined) fs.chmodSync(host, meta.mode);
}

/** Rename inside the image; neither final component is followed (a symlink moves as itself). */
export function renameIn(root: string, fromGuest: string, toGuest: string): void {
  fs.renameSync(resolveInRoot(root, fromGuest, { followLast: false }), resolveInRoot(root, toGuest, { followLast: false }));
}

export function existsIn(root: string, guestPath: string): boolean {
  return statIn(root, guestPath) !== undefined;
}

export function isFileIn(root: string, guestPath: string): boolean {
  return statIn(root, guestPath)?.isFile() ?? false;
}

export function isDirIn(root: string, guestPath: string): boolean {
  return statIn(root, guestPath)?.isDirectory() ?? false;
}

/**
 * Bytes of a regular file inside the image, or undefined if it is missing or
 * not a regular file; a file larger than `maxBytes` is refused.
 */
export function readBytesIn(root: string, guestPath: string, maxBytes = Number.POSITIVE_INFINITY): Buffer | undefined {
  const host = resolveInRoot(root, guestPath);
  let st: fs.Stats;
  try {
    st = fs.statSync(host);
  } catch {
    return undefined;
  }
  if (!st.isFile()) return undefined;
  if (st.size > maxBytes) throw new Error(`${guestPath} in the image is larger than ${maxBytes} bytes`);
  return fs.readFileSync(host);
}

/** Text of a regular file inside the image (see readBytesIn). */
export function readTextIn(root: string, guestPath: string, maxBytes?: number): string | undefined {
  return readBytesIn(root, guestPath, maxBytes)?.toString("utf8");
}

/**
 * Create a directory and its missing parents inside the image. New
 * directories get `meta` (mode default 0755, owner default root); existing
 * ones are left alone. Returns the host path.
 */
export function mkdirIn(root: string, guestPath: string, meta: FileMeta = {}): string {
  const comps = components(guestPath);
  let cur = "/";
  let host = resolveInRoot(root, "/");
  for (const c of comps) {
    cur = path.posix.join(cur, c);
    host = resolveInRoot(root, cur);
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(host);
    } catch {
      st = undefined;
    }
    if (st === undefined) {
      // A symlink may have led to a deeper missing path: make its parents first.
      const parentHost = path.dirname(host);
      if (!fs.existsSync(parentHost)) mkdirIn(root, guestPathOf(root, parentHost), meta);
      fs.mkdirSync(host, { mode: 0o700 });
      fs.chownSync(host, meta.uid ?? 0, meta.gid ?? 0);
      fs.chmodSync(host, meta.mode ?? 0o755);
    } else if (!st.isDirectory()) {
      throw new UnsafePathError(`${cur} exists in the image and is not a directory`);
    }
  }
  return host;
}

/**
 * Write a file inside the image atomically (temp file + rename in the same
 * directory). If the file exists, its owner and mode are kept unless `meta`
 * says otherwise; a new file gets meta (default 0644 root:root). The parent
 * directory must exist. Returns the host path.
 */
export function writeFileIn(root: string, guestPath: string, data: string | Uint8Array, meta: FileMeta = {}): string {
  const host = resolveInRoot(root, guestPath);
  const dir = path.dirname(host);
  let old: fs.Stats | undefined;
  try {
    old = fs.statSync(host);
  } catch {
    old = undefined;
  }
  if (old && !old.isFile()) throw new UnsafePathError(`${guestPath} exists in the image and is not a regular file`);
  const mode = meta.mode ?? (old ? old.mode & 0o7777 : 0o644);
  const uid = meta.uid ?? old?.uid ?? 0;
  const gid = meta.gid ?? old?.gid ?? 0;
  const tmp = path.join(dir, `.${path.basename(host)}.snf-tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fs.fchownSync(fd, uid, gid);
    fs.fchmodSync(fd, mode);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(tmp, host);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return host;
}

/** Remove a file or symlink (the link itself, never its target). Returns true if something was removed. */
export function removeIn(root: string, guestPath: string): boolean {
  const host = resolveInRoot(root, guestPath, { followLast: false });
  let st: fs.Stats;
  try {
    st = fs.lstatSync(host);
  } catch {
    return false;
  }
  if (st.isDirectory()) throw new UnsafePathError(`${guestPath} is a directory`);
  fs.unlinkSync(host);
  return true;
}

/** Names in a directory inside the image ([] if it is missing). */
export function listDirIn(root: string, guestPath: string): string[] {
  const host = resolveInRoot(root, guestPath);
  try {
    return fs.readdirSync(host).sort();
  } catch {
    return [];
  }
}

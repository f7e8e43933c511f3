/**
 * The helper's one mount-table module: reading the kernel's table
 * (/proc/self/mountinfo: what is mounted where, read-only or not) and
 * mount/umount through the helper's own tools, with every mount tracked so
 * that everything is unmounted, deepest first, on success and on failure.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RunFn } from "./exec.ts";
import { run as execRun } from "./exec.ts";

export interface MountOptions {
  fsType?: string;
  options?: string[];
  readOnly?: boolean;
}

/** Undo the octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) of mountinfo and fstab fields. */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** One line of /proc/self/mountinfo, fields unescaped. */
export interface MountInfoEntry {
  mountPoint: string;
  /** Per-mount options (field 6). */
  options: string[];
  fsType: string;
  source: string;
  /** Per-superblock options (after the "-" separator). */
  superOptions: string[];
}

/** The kernel's mount table (/proc/self/mountinfo), in mount order; [] if unreadable. */
export function readMountInfo(mountinfo = "/proc/self/mountinfo"): MountInfoEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(mountinfo, "utf8");
  } catch {
    return [];
  }
  const out: MountInfoEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 6) continue;
    const sep = f.indexOf("-", 6);
    out.push({
      mountPoint: unescapeMountField(f[4]!),
      options: f[5]!.split(","),
      fsType: sep > 0 ? (f[sep + 1] ?? "") : "",
      source: sep > 0 ? unescapeMountField(f[sep + 2] ?? "") : "",
      superOptions: sep > 0 ? (f[sep + 3] ?? "").split(",") : [],
    });
  }
  return out;
}

/** Mount points currently mounted at or below `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string, mountinfo = "/proc/self/mountinfo"): string[] {
  const base = path.resolve(dir);
  const prefix = base.endsWith("/") ? base : `${base}/`;
  const out = readMountInfo(mountinfo)
    .map((m) => m.mountPoint)
    .filter((mp) => mp === base || mp.startsWith(prefix));
  return sortDeepestFirst(out);
}

/**
 * Is the mount at `target` read-only, per mount or per superblock (Linux
 * mounts an unclean UFS read-only at the superblock)? The topmost mount
 * counts; undefined if nothing is mounted there.
 */
export function mountIsReadOnly(target: string, mountinfo = "/proc/self/mountinfo"): boolean | undefined {
  const m = readMountInfo(mountinfo).findLast((e) => e.mountPoint === target);
  return m === undefined ? undefined : m.options.includes("ro") || m.superOptions.includes("ro");
}

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Where block device `dev` is mounted (shortest mount point first). */
export function mountPointsOf(dev: string, mountinfo = "/proc/self/mountinfo"): string[] {
  const want = real(dev);
  return readMountInfo(mountinfo)
    .filter((m) => m.source === dev || (m.source.startsWith("/") && real(m.source) === want))
    .map((m) => m.mountPoint)
    .sort((a, b) => a.length - b.length);
}

export function sortDeepestFirst(points: string[]): string[] {
  const depth = (p: string) => p.split("/").filter(Boolean).length;
  // Same mount point mounted twice: the later one (later in mountinfo) first.
  return points.map((p, i) => ({ p, i })).sort((a, b) => depth(b.p) - depth(a.p) || b.i - a.i).map((x) => x.p);
}

export class Mounts {
  private tracked: string[] = [];

  constructor(private readonly run: RunFn) {}

  get active(): readonly string[] {
    return this.tracked;
  }

  async mount(dev: string, target: string, opts: MountOptions = {}): Promise<void> {
    const o = [...(opts.options ?? [])];
    if (opts.readOnly) o.unshift("ro");
    let cmd: string[];
    if (opts.fsType === "ntfs" || opts.fsType === "ntfs-3g") {
      cmd = ["ntfs-3g", dev, target];
      if (o.length) cmd.push("-o", o.join(","));
    } else {
      cmd = ["mount"];
      if (opts.fsType) cmd.push("-t", opts.fsType);
      if (o.length) cmd.push("-o", o.join(","));
      cmd.push(dev, target);
    }
    const r = await this.run(cmd, { allowFail: true });
    if (r.exitCode !== 0) {
      const why = r.stderr.trim().split("\n").pop()?.trim() || `exit ${r.exitCode}`;
      throw new Error(`cannot mount ${dev} on ${target}: ${why}`);
    }
    this.tracked.push(path.resolve(target));
  }

  /** Unmount one mount point, retrying while it is busy. */
  async umount(target: string, opts: { lazyLastResort?: boolean } = {}): Promise<void> {
    const t = path.resolve(target);
    let last = "";
    for (const delay of [0, 250, 500, 1000]) {
      if (delay) await Bun.sleep(delay);
      const r = await this.run(["umount", t], { allowFail: true });
      if (r.exitCode === 0) {
        this.forget(t);
        return;
      }
      last = r.stderr.trim().split("\n").pop()?.trim() || `exit ${r.exitCode}`;
      if (!mountsUnder(t).includes(t)) {
        this.forget(t);
        return;
      }
    }
    if (opts.lazyLastResort) {
      const r = await this.run(["umount", "-l", t], { allowFail: true });
      if (r.exitCode === 0) {
        this.forget(t);
        return;
      }
    }
    throw new Error(`cannot unmount ${t}: ${last}`);
  }

  /**
   * Unmount everything at or below `dir` (tracked or not), deepest first.
   * With bestEffort, keeps going after a failure and never throws.
   */
  async umountUnder(dir: string, opts: { bestEffort?: boolean } = {}): Promise<void> {
    for (let round = 0; round < 3; round++) {
      const points = sortDeepestFirst([...new Set([...mountsUnder(dir), ...this.tracked.filter((p) => p === path.resolve(dir) || p.startsWith(`${path.resolve(dir)}/`))])]);
      const live = new Set(mountsUnder(dir));
      const todo = points.filter((p) => live.has(p));
      if (todo.length === 0) break;
      for (const p of todo) {
        try {
          await this.umount(p, { lazyLastResort: opts.bestEffort });
        } catch (e) {
          if (!opts.bestEffort) throw e;
        }
      }
    }
    this.tracked = this.tracked.filter((p) => mountsUnder(p).includes(p));
  }

  /** Unmount every tracked mount, deepest first, never throwing (failure cleanup). */
  async umountAll(): Promise<void> {
    for (const p of sortDeepestFirst([...this.tracked])) {
      try {
        await this.umount(p, { lazyLastResort: true });
      } catch {
        // best effort
      }
    }
    this.tracked = [];
  }

  private forget(t: string): void {
    const i = this.tracked.lastIndexOf(t);
    if (i >= 0) this.tracked.splice(i, 1);
  }
}

/** The helper's one mount table for the image (MountImage, UmountImage, failure cleanup, detection). */
export const imageMounts = new Mounts(execRun);

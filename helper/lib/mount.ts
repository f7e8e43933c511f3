/**
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

/** Mount points currently mounted at or below `dir` (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string, mountinfo = "/proc/self/mountinfo"): string[] {
  const base = path.resolve(dir);
  let text: string;
  try {
    text = fs.readFileSync(mountinfo, "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const mp = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === base || mp.startsWith(base.endsWith("/") ? base : `${base}/`)) out.push(mp);
  }
  return sortDeepestFirst(out);
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

/** Where a block device is mounted, from /proc/self/mounts. */
import * as fs from "node:fs";

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function real(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

/** Mount points of `dev` (shortest first), parsed from a mounts table text. */
export function mountPointsOf(dev: string, mountsText: string): string[] {
  const want = real(dev);
  const out: string[] = [];
  for (const line of mountsText.split("\n")) {
    const [src, dir] = line.split(" ");
    if (!src || !dir) continue;
    const s = unescapeMount(src);
    if (s === dev || real(s) === want) out.push(unescapeMount(dir));
  }
  return out.sort((a, b) => a.length - b.length);
}

export function currentMountPointsOf(dev: string): string[] {
  return mountPointsOf(dev, fs.readFileSync("/proc/self/mounts", "utf8"));
}

/**
 * Loop devices and mounts for tests that inspect a disk image from the host
 * (no device-mapper here: `losetup -P`, falling back to `partx -a`). Every
 * device and mount is undone in finally blocks and, as a last resort, on
 * process exit. Needs root.
 */
import { existsSync, mkdtempSync, readdirSync, rmdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

export interface LoopDisk {
  /** /dev/loopN */
  dev: string;
  /** /dev/loopNp1, /dev/loopNp2, … in partition order */
  partitions: string[];
  detach(): Promise<void>;
}

const attached = new Set<string>();
const mounted = new Set<string>();
let hooked = false;
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const m of mounted) Bun.spawnSync(["umount", "-l", m]);
    for (const d of attached) {
      Bun.spawnSync(["partx", "-d", d]);
      Bun.spawnSync(["losetup", "-d", d]);
    }
  });
}

async function sh(argv: string[]): Promise<string> {
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`);
  return out;
}

function partitionsOf(dev: string): string[] {
  const n = basename(dev);
  if (!existsSync(`/sys/block/${n}`)) return [];
  return readdirSync(`/sys/block/${n}`)
    .filter((e) => new RegExp(`^${n}p\\d+$`).test(e))
    .sort((a, b) => Number(a.slice(n.length + 1)) - Number(b.slice(n.length + 1)))
    .map((e) => `/dev/${e}`);
}

/** Attach an image file (read-only unless writable) and expose its partitions. */
export async function attachLoop(file: string, o: { writable?: boolean } = {}): Promise<LoopDisk> {
  hook();
  const dev = (await sh(["losetup", "-f", "--show", "-P", ...(o.writable ? [] : ["-r"]), file])).trim();
  attached.add(dev);
  let partitions = partitionsOf(dev);
  if (partitions.length === 0) {
    // the kernel did not scan (seen on this kind of machine): ask partx
    await sh(["partx", "-a", dev]).catch(() => "");
    partitions = partitionsOf(dev);
  }
  // devtmpfs creates the nodes asynchronously
  for (let i = 0; i < 50 && !partitions.every((p) => existsSync(p)); i++) await Bun.sleep(20);
  let done = false;
  return {
    dev,
    partitions,
    async detach() {
      if (done) return;
      done = true;
      await sh(["partx", "-d", dev]).catch(() => "");
      await sh(["losetup", "-d", dev]);
      attached.delete(dev);
    },
  };
}

export async function withLoop<T>(file: string, f: (d: LoopDisk) => Promise<T>, o: { writable?: boolean } = {}): Promise<T> {
  const d = await attachLoop(file, o);
  try {
    return await f(d);
  } finally {
    await d.detach();
  }
}

/** Mount a block device (read-only by default) on a temp dir for the duration of f. */
export async function withMount<T>(dev: string, f: (dir: string) => Promise<T>, o: { writable?: boolean } = {}): Promise<T> {
  hook();
  const dir = mkdtempSync(join(tmpdir(), "snf-test-mnt-"));
  try {
    await sh(["mount", "-o", o.writable ? "rw" : "ro", dev, dir]);
    mounted.add(dir);
    try {
      return await f(dir);
    } finally {
      await sh(["umount", dir]);
      mounted.delete(dir);
    }
  } finally {
    rmdirSync(dir);
  }
}

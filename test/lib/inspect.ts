/**
 * Look at a deployed disk from outside the helper (test side only): attach
 * it read-only to a loop device, mount its partitions read-only, read files.
 * Everything is undone by close().
 */
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dlopen, FFIType } from "bun:ffi";

function run(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

export interface MountedDisk {
  loop: string;
  root: string;
  read(path: string): string;
  exists(path: string): boolean;
  stat(path: string): { mode: number; uid: number; gid: number; size: number };
  /** Modification time, ms since the epoch. */
  mtime(path: string): number;
  list(path: string): string[];
  partitions(): { node: string; start: number; size: number; type: string }[];
  close(): void;
}

/** Mount partition `rootPart` (and an optional /boot partition) of `disk` read-only. */
export function mountDisk(disk: string, rootPart = 1, extra: { part: number; at: string }[] = []): MountedDisk {
  const loop = run(["losetup", "-f", "--show", "-r", "-P", disk]).trim();
  run(["partx", "-u", loop]);
  const root = mkdtempSync(join(tmpdir(), "snf-inspect-"));
  const mounted: string[] = [];
  const close = () => {
    for (const m of mounted.reverse()) Bun.spawnSync(["umount", m]);
    Bun.spawnSync(["losetup", "-d", loop]);
    rmSync(root, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < 50 && !existsSync(`${loop}p${rootPart}`); i++) Bun.sleepSync(20);
    run(["mount", "-o", "ro,noload", `${loop}p${rootPart}`, root]);
    mounted.push(root);
  } catch {
    try {
      run(["mount", "-o", "ro", `${loop}p${rootPart}`, root]);
      mounted.push(root);
    } catch (e) {
      close();
      throw e;
    }
  }
  for (const x of extra) {
    run(["mount", "-o", "ro", `${loop}p${x.part}`, join(root, x.at)]);
    mounted.push(join(root, x.at));
  }
  const p = (path: string) => join(root, path);
  return {
    loop,
    root,
    read: (path) => readFileSync(p(path), "utf8"),
    exists: (path) => existsSync(p(path)),
    stat: (path) => {
      const s = statSync(p(path));
      return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: s.size };
    },
    mtime: (path) => statSync(p(path)).mtimeMs,
    list: (path) => readdirSync(p(path)),
    partitions: () => {
      const j = JSON.parse(run(["sfdisk", "--json", disk])) as { partitiontable: { partitions: { node: string; start: number; size: number; type: string }[] } };
      return j.partitiontable.partitions;
    },
    close,
  };
}

const libcrypt = dlopen("libcrypt.so.1", { crypt: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.cstring } });

/** Does `password` match the crypt(3) `hash`? (the host's libxcrypt, as the guest's PAM uses) */
export function verifyCrypt(password: string, hash: string): boolean {
  const out = libcrypt.symbols.crypt(Buffer.from(`${password}\0`), Buffer.from(`${hash}\0`));
  return String(out) === hash;
}

/** The shadow hash field of `user`. */
export function shadowHash(shadow: string, user: string): string | undefined {
  return shadow.split("\n").find((l) => l.startsWith(`${user}:`))?.split(":")[1];
}

/**
 * What a run of `create` (or any OS script) may leave behind on the node:
 * qemu processes, loop devices, child processes of the test, files under the
 * run's TMPDIR, a secret written to disk. `leftovers` lists them, one
 * description each, so a test can `expect(leftovers(…)).toEqual([])`.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

/** qemu processes whose command line mentions `marker` (the test's work dir). */
export function qemuPids(marker: string): string[] {
  const p = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${marker}`], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}

/** Loop devices backed by files under `marker` (other work on the machine may use others). */
export function loopDevices(marker: string): string[] {
  const all = Bun.spawnSync(["losetup", "-a"], { stdout: "pipe" }).stdout.toString();
  return all.split("\n").filter((l) => marker && l.includes(marker));
}

/** Processes still running as children of this test process (decompressors, qemu…). */
export function childPids(): string[] {
  const p = Bun.spawnSync(["pgrep", "-P", String(process.pid)], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}

/** Every path under dir (relative), depth first; unreadable directories are listed as such. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      out.push(`${relative(dir, d)} (unreadable)`);
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      out.push(relative(dir, p));
      if (statSync(p, { throwIfNoEntry: false })?.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** Files under dir whose bytes contain `secret`. */
export function secretUnder(dir: string, secret: string): string[] {
  return filesUnder(dir).filter((f) => {
    try {
      return readFileSync(join(dir, f)).includes(secret);
    } catch {
      return false;
    }
  });
}

/**
 * Everything left behind: qemu or loop devices on `work`, child processes,
 * anything under `tmp` (the run's TMPDIR), and files under `tmp` holding `secret`.
 */
export function leftovers(o: { work: string; tmp: string; secret?: string }): string[] {
  return [
    ...qemuPids(o.work).map((p) => `qemu process ${p}`),
    ...loopDevices(o.work).map((l) => `loop device ${l}`),
    ...childPids().map((p) => `child process ${p}`),
    ...filesUnder(o.tmp).map((f) => `temp ${f}`),
    ...(o.secret ? secretUnder(o.tmp, o.secret).map((f) => `secret in ${f}`) : []),
  ];
}

/**
 * Test helpers around the project's single-node Ganeti cluster
 * (test/lib/ganeti-cluster.sh): bring it up/down, install an OS provider,
 * run gnt-* commands, read the OS script logs. Needs root.
 */
import { existsSync, lstatSync, readdirSync, statSync } from "node:fs";
import { readFile, rm, symlink, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";

export const CLUSTER_SCRIPT = join(import.meta.dir, "ganeti-cluster.sh");
export const NODE = "node1.snf.test";
export const OS_ROOT = "/srv/ganeti/os";
export const OS_LOG_DIR = "/var/log/ganeti/os";
export const FILE_STORAGE_DIR = "/srv/ganeti/file-storage";

export interface GntResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runCmd(argv: string[]): Promise<GntResult> {
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

async function script(cmd: "up" | "down" | "status"): Promise<GntResult> {
  const r = await runCmd(["bash", CLUSTER_SCRIPT, cmd]);
  if (r.code !== 0 && cmd !== "status") {
    throw new Error(`ganeti-cluster.sh ${cmd} failed (exit ${r.code}):\n${(r.stderr + r.stdout).trim().split("\n").slice(-20).join("\n")}`);
  }
  return r;
}

/** Install (first time), init or restart the cluster; idempotent. Returns seconds taken. */
export async function clusterUp(): Promise<number> {
  const t0 = performance.now();
  await script("up");
  return (performance.now() - t0) / 1000;
}

/** Remove all instances, destroy the cluster, stop the daemons, restore the hostname. */
export async function clusterDown(): Promise<number> {
  const t0 = performance.now();
  await script("down");
  return (performance.now() - t0) / 1000;
}

export async function clusterRunning(): Promise<boolean> {
  return (await script("status")).code === 0;
}

/**
 * Make an OS provider directory visible to Ganeti as /srv/ganeti/os/<name>
 * (a symlink; an existing symlink is replaced). Returns an uninstall function.
 */
export async function installOs(osDir: string, name = "snf-image"): Promise<() => Promise<void>> {
  const src = resolve(osDir);
  for (const f of ["ganeti_api_version", "create", "export", "import", "rename", "verify"]) {
    if (!existsSync(join(src, f))) throw new Error(`${src} is not an OS provider: ${f} missing`);
  }
  await mkdir(OS_ROOT, { recursive: true });
  const dest = join(OS_ROOT, name);
  const st = lstatSync(dest, { throwIfNoEntry: false });
  if (st && !st.isSymbolicLink()) throw new Error(`${dest} exists and is not a symlink; not replacing it`);
  if (st) await rm(dest);
  await symlink(src, dest);
  return async () => {
    if (lstatSync(dest, { throwIfNoEntry: false })?.isSymbolicLink()) await rm(dest);
  };
}

/** Run a gnt-* command: gnt(["instance", "add", ...]) or gnt(["gnt-instance", "add", ...]). Never throws. */
export async function gnt(args: string[]): Promise<GntResult> {
  const [first, ...rest] = args;
  if (!first) throw new Error("gnt: no command");
  const cmd = first.startsWith("gnt-") ? first : `gnt-${first}`;
  return runCmd([cmd, ...rest]);
}

/** Like gnt() but throws with stderr on a non-zero exit. */
export async function gntOk(args: string[]): Promise<string> {
  const r = await gnt(args);
  if (r.code !== 0) throw new Error(`gnt ${args.join(" ")} exited ${r.code}:\n${(r.stderr + r.stdout).trim()}`);
  return r.stdout;
}

/** Escape a value for Ganeti's -O key=val,key=val syntax. */
export function osParamValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/,/g, "\\,");
}

/** `gnt-instance add` with the flags a loopback single-node cluster needs. */
export function addArgs(o: { os: string; instance: string; sizeMiB?: number; params?: Record<string, string>; template?: "file" }): string[] {
  // One -O option (a second one replaces the first); commas and backslashes in values escaped the
  // way Ganeti's key=val parser (UnescapeAndSplit) expects.
  const kv = Object.entries(o.params ?? {}).map(([k, v]) => `${k}=${osParamValue(v)}`);
  const params = kv.length ? ["-O", kv.join(",")] : [];
  return [
    "instance", "add", "-o", o.os, "-t", o.template ?? "file", "--disk", `0:size=${o.sizeMiB ?? 64}M`,
    ...params, "--no-start", "--no-name-check", "--no-ip-check", "--no-nics", "-n", NODE, o.instance,
  ];
}

/**
 * Path and text of the newest OS script log of `kind` (add, rename, import,
 * export; reinstall logs as "add") for an instance, or undefined.
 */
export async function lastOsLog(
  kind: "add" | "rename" | "import" | "export",
  instance: string,
): Promise<{ path: string; text: string } | undefined> {
  if (!existsSync(OS_LOG_DIR)) return undefined;
  // add-<os>+<variant>-<instance>-<YYYY-MM-DD_HH_MM_SS>.log ; rename-<os>+<variant>-<old>-<new>-<ts>.log
  const files = readdirSync(OS_LOG_DIR)
    .filter((f) => f.startsWith(`${kind}-`) && f.includes(`-${instance}-`) && f.endsWith(".log"))
    .map((f) => join(OS_LOG_DIR, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs || b.localeCompare(a));
  const path = files[0];
  if (!path) return undefined;
  return { path, text: await readFile(path, "utf8") };
}

/** Directory of an instance's file-template disks. */
export function instanceDiskDir(instance: string): string {
  return join(FILE_STORAGE_DIR, instance);
}

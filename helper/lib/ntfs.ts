/**
 * ntfsresize wrapper: read-only inspection (--info: consistency check and
 * the volume/device sizes; refuses a volume marked dirty) and offline grow
 * to the size of the device/partition. Works on partitions and on plain
 * image files (libntfs-3g handles both).
 *
 * ntfsresize marks the volume for a consistency check (chkdsk at the first
 * Windows boot) after a real resize and leaves it so, on purpose.
 */
import * as fs from "node:fs";
import type { RunFn } from "./exec.ts";

export interface NtfsInfo {
  /** "3.1" */
  version: string;
  clusterBytes: number;
  /** Current NTFS volume size. */
  volumeBytes: number;
  /** Size of the device (partition or file) the volume lives on. */
  deviceBytes: number;
  /** "Space in use" when ntfsresize printed it (MB, rounded up by ntfsresize), else undefined. */
  usedMB?: number;
}

/** ntfsresize refused the volume because it is marked dirty (scheduled for chkdsk). */
export class NtfsDirtyError extends Error {
  constructor(what: string) {
    super(
      `${what} is marked dirty (scheduled for chkdsk): shut Windows down cleanly (no hibernation/fast startup) or run chkdsk /f before taking the image, or set OFFLINE_NTFSRESIZE_NOCHECK to resize it anyway`,
    );
    this.name = "NtfsDirtyError";
  }
}

/** Parse the header ntfsresize prints (any mode: --info, --no-action or a real run). */
export function parseNtfsresizeOutput(text: string): NtfsInfo {
  const field = (name: string): string | undefined => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim();
  const bytes = (name: string): number => {
    const v = field(name);
    const m = v === undefined ? null : /^(\d+) bytes/.exec(v);
    if (!m) throw new Error(`ntfsresize printed no "${name}"`);
    return Number(m[1]);
  };
  const used = /^(\d+) MB/.exec(field("Space in use") ?? "");
  return {
    version: field("NTFS volume version") ?? "",
    clusterBytes: bytes("Cluster size"),
    volumeBytes: bytes("Current volume size"),
    deviceBytes: bytes("Current device size"),
    usedMB: used ? Number(used[1]) : undefined,
  };
}

/** The ERROR line(s) ntfsresize printed, or its last line. */
function cause(r: { stdout: string; stderr: string; exitCode: number }): string {
  const all = `${r.stderr}\n${r.stdout}`;
  const err = /^ERROR(?:\(\d+\))?:\s*(.*)$/m.exec(all)?.[1]?.trim();
  return err || all.trim().split("\n").pop()?.trim() || `exit ${r.exitCode}`;
}

const DIRTY = /Volume is scheduled for check/i;

/**
 * `ntfsresize --info --no-action`: opens the volume read-only, checks its
 * consistency and prints its sizes. Throws NtfsDirtyError on a dirty volume
 * unless `force` (then a dirty volume is inspected anyway).
 */
export async function readNtfsInfo(run: RunFn, dev: string, what: string, opts: { force?: boolean } = {}): Promise<NtfsInfo> {
  const cmd = ["ntfsresize", "--info", "--no-action", "--no-progress-bar", ...(opts.force ? ["--force"] : []), dev];
  const r = await run(cmd, { allowFail: true });
  if (r.exitCode !== 0) {
    if (DIRTY.test(r.stdout + r.stderr)) throw new NtfsDirtyError(what);
    throw new Error(`ntfsresize cannot use ${what}: ${cause(r)}`);
  }
  return parseNtfsresizeOutput(r.stdout);
}

export interface GrowResult {
  /** False when the volume already filled the device ("Nothing to do"). */
  grown: boolean;
  before: NtfsInfo;
  /** "New volume size" ntfsresize reported (bytes). */
  newVolumeBytes: number;
}

/**
 * Grow NTFS to the size of its device. The caller must have checked the
 * volume with readNtfsInfo first: `--force` here only suppresses the
 * confirmation prompt (ntfsresize proceeds on EOF otherwise). `noCheck`
 * doubles it, which also resizes a volume marked dirty (dangerous).
 */
export async function growNtfs(run: RunFn, dev: string, what: string, opts: { noCheck?: boolean } = {}): Promise<GrowResult> {
  const force = opts.noCheck ? ["--force", "--force"] : ["--force"];
  const r = await run(["ntfsresize", "--no-progress-bar", ...force, dev], { allowFail: true });
  if (r.exitCode !== 0) {
    if (DIRTY.test(r.stdout + r.stderr)) throw new NtfsDirtyError(what);
    throw new Error(`ntfsresize failed on ${what}: ${cause(r)}`);
  }
  const before = parseNtfsresizeOutput(r.stdout);
  const nv = /^New volume size\s*:\s*(\d+) bytes/m.exec(r.stdout);
  const newVolumeBytes = nv ? Number(nv[1]) : before.volumeBytes;
  if (/Nothing to do/i.test(r.stdout)) return { grown: false, before, newVolumeBytes };
  if (!/Successfully resized NTFS/i.test(r.stdout)) throw new Error(`ntfsresize did not report success on ${what}: ${cause(r)}`);
  return { grown: true, before, newVolumeBytes };
}

/**
 * Wait until no ntfs-3g process has `dev` open any more: a FUSE unmount
 * returns before the ntfs-3g daemon has closed the device, and ntfsresize
 * opens it exclusively. Returns false on timeout.
 */
export async function waitNtfs3gReleased(dev: string, timeoutMs = 10_000, proc = "/proc"): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (ntfs3gHolders(dev, proc).length === 0) return true;
    if (Date.now() >= deadline) return false;
    await Bun.sleep(100);
  }
}

/** PIDs of ntfs-3g / lowntfs-3g / mount.ntfs* processes whose command line names `dev`. */
export function ntfs3gHolders(dev: string, proc = "/proc"): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync(proc);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`${proc}/${e}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    const exe = (argv[0] ?? "").split("/").pop() ?? "";
    if (!/^(lowntfs-3g|ntfs-3g|mount\.ntfs(-3g)?|mount\.lowntfs-3g)$/.test(exe)) continue;
    if (argv.slice(1).includes(dev)) out.push(Number(e));
  }
  return out;
}

/**
 * Run-owned names and the sweep of what dead runs left behind.
 *
 * Every temporary directory a run makes is named `snf-<kind>-<pid>-<start>-XXXXXX`,
 * where <pid> is the run's process and <start> its start time (clock ticks
 * since boot, field 22 of /proc/PID/stat), so that a later run can tell a
 * live owner from a dead one even after the pid was reused. The qemu command
 * line carries the socket directory's name, so an orphan qemu (and its
 * setpriv/unshare/timeout leash) can be traced to its run the same way.
 *
 * The sweep removes only what belongs to a run that is gone: never a live
 * run's files, never an entry owned by another user, never a name it cannot
 * attribute (old-style names without pid are left alone).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export type LeftoverKind = "image" | "vm";

/** Start time of a process in clock ticks since boot, or null when it does not exist. */
export function processStartTime(pid: number): number | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // comm (field 2) may contain spaces and parentheses: the fields after the LAST ")" are fixed
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (rest[0] === "Z" || rest[0] === "X") return null; // a zombie has finished running
  const start = Number(rest[19]);
  return Number.isSafeInteger(start) ? start : null;
}

let ownTag: string | null = null;
/** `<pid>-<start>` of this process. */
export function runTag(): string {
  ownTag ??= `${process.pid}-${processStartTime(process.pid) ?? 0}`;
  return ownTag;
}

/** Private (0700) temporary directory owned by this run. */
export function runTempDir(kind: LeftoverKind, base = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, `snf-${kind}-${runTag()}-`));
  fs.chmodSync(dir, 0o700);
  return dir;
}

const NAME_RE = /^snf-(?:image|vm)-(\d+)-(\d+)-[A-Za-z0-9]{6}$/;
/** The argv element naming a helper VM's console socket (see qemuCommandLine). */
const QEMU_ARG_RE = /^socket,id=console,path=.*\/snf-vm-(\d+)-(\d+)-[A-Za-z0-9]{6}\/console\.sock$/;

/** Is the run named by `<pid>-<start>` (as in runTag) still alive? */
export function ownerAlive(pid: string, start: string): boolean {
  return processStartTime(Number(pid)) === Number(start);
}

/** Where runs make their directories: TMPDIR, and /tmp for socket directories (short paths). */
export function leftoverBases(): string[] {
  return [...new Set([os.tmpdir(), "/tmp"])];
}

export interface SweepReport {
  dirs: string[];
  pids: number[];
}

/** Kill orphan helper VMs of dead runs, then remove dead runs' directories. */
export function sweepLeftovers(bases: string[] = leftoverBases()): SweepReport {
  const report: SweepReport = { dirs: [], pids: [] };
  const uid = process.getuid?.() ?? 0;
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    for (const a of argv) {
      const m = QEMU_ARG_RE.exec(a);
      if (!m || ownerAlive(m[1]!, m[2]!)) continue;
      try {
        process.kill(Number(d), "SIGKILL");
        report.pids.push(Number(d));
      } catch {}
      break;
    }
  }
  for (const base of bases) {
    let names: string[];
    try {
      names = fs.readdirSync(base);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = NAME_RE.exec(name);
      if (!m || ownerAlive(m[1]!, m[2]!)) continue;
      const p = path.join(base, name);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st || st.uid !== uid) continue;
      try {
        fs.rmSync(p, { recursive: true, force: true });
        report.dirs.push(p);
      } catch {}
    }
  }
  return report;
}

/** The one line a run prints about what it swept, or null when there was nothing. */
export function describeSweep(r: SweepReport): string | null {
  if (!r.dirs.length && !r.pids.length) return null;
  const parts: string[] = [];
  if (r.pids.length) parts.push(`killed ${r.pids.length} orphan helper VM process${r.pids.length === 1 ? "" : "es"} (pid ${r.pids.join(", ")})`);
  if (r.dirs.length) parts.push(`removed ${r.dirs.length} temporary director${r.dirs.length === 1 ? "y" : "ies"} (${r.dirs.map((d) => path.basename(d)).join(", ")})`);
  return `leftovers of dead runs: ${parts.join("; ")}`;
}

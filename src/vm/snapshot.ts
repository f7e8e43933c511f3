/**
 * Saved helper VM states ("snapshots"): a helper VM that has booted and waits
 * for its disks (HELPER_READY_LINE) is saved once with qemu's migration to a
 * file, and later runs resume that state (`-incoming fd:`) instead of booting
 * a kernel and starting Bun again (docs/architecture.md, "Helper VM start").
 *
 * A snapshot is only valid for the exact qemu binary, helper image, machine
 * (accelerator, memory, host CPU under KVM) and snf-image protocol it was
 * made with: all of it goes into its key, which is its file name. A state
 * holds no secret: it is saved before the helper has read any parameter
 * (qemu's fw_cfg data is not part of the migration stream) and before any
 * disk is attached. Files are root-owned, 0600, written to a temporary name
 * and renamed into place; qemu reads them through an inherited descriptor.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { PROTOCOL_VERSION } from "../protocol.ts";
import { ownerAlive, runTag } from "../leftovers.ts";

export const SNAPSHOT_DIR = "snapshots";
/** Where the states of a helper image live: inside it, so a rebuilt image starts with none. */
export const snapshotDir = (helperDir: string): string => path.join(helperDir, SNAPSHOT_DIR);
const STATE_SUFFIX = ".state";
const META_SUFFIX = ".json";
/** Incoming state larger than this is not a helper snapshot (guest RAM + room for device state). */
export const snapshotMaxBytes = (memoryMiB: number): number => (memoryMiB + 64) * 1024 * 1024;

export interface SnapshotKeyInput {
  qemu: string;
  files: { kernel: string; initrd: string; tools: string };
  accel: "kvm" | "tcg";
  memoryMiB: number;
  /** HELPER_DEBUG boots another kernel command line. */
  debug: boolean;
}

export interface Snapshot {
  state: string;
  /** The kernel command line the saved guest booted with (a resume must pass the same). */
  cmdline: string;
  bytes: number;
}

function statKey(p: string): string {
  const st = fs.statSync(p);
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

/** Under KVM the saved CPU state must fit the host CPU: its model and flags are part of the key. */
function hostCpu(): string {
  try {
    const text = fs.readFileSync("/proc/cpuinfo", "utf8");
    const model = /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? "";
    const flags = /^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? "";
    return `${model}|${flags}`;
  } catch {
    return "unknown";
  }
}

/** The key of a snapshot: the qemu binary, the helper image files, the machine and the protocol. */
export function snapshotKey(o: SnapshotKeyInput): string {
  const parts = [
    `protocol ${PROTOCOL_VERSION}`,
    `qemu ${fs.realpathSync(o.qemu)} ${statKey(o.qemu)}`,
    `kernel ${statKey(o.files.kernel)}`,
    `initrd ${statKey(o.files.initrd)}`,
    `tools ${statKey(o.files.tools)}`,
    `accel ${o.accel}`,
    `memory ${o.memoryMiB}`,
    `debug ${o.debug}`,
    ...(o.accel === "kvm" ? [`cpu ${hostCpu()}`] : []),
  ];
  return createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 32);
}

const statePath = (dir: string, key: string) => path.join(dir, `${key}${STATE_SUFFIX}`);
const metaPath = (dir: string, key: string) => path.join(dir, `${key}${META_SUFFIX}`);

/** The snapshot for `key`, or why there is none (one line). */
export function findSnapshot(dir: string, key: string, memoryMiB: number): Snapshot | { missing: string } {
  let meta: unknown;
  try {
    meta = JSON.parse(fs.readFileSync(metaPath(dir, key), "utf8"));
  } catch {
    return { missing: "no saved helper VM for this qemu, helper image and machine" };
  }
  const m = meta as { cmdline?: unknown; bytes?: unknown };
  if (typeof m.cmdline !== "string" || m.cmdline.length > 4096 || typeof m.bytes !== "number") return { missing: "the saved helper VM's description is corrupt" };
  let st: fs.Stats;
  try {
    st = fs.statSync(statePath(dir, key));
  } catch {
    return { missing: "the saved helper VM state is missing" };
  }
  if (!st.isFile() || st.size !== m.bytes || st.size === 0 || st.size > snapshotMaxBytes(memoryMiB)) return { missing: "the saved helper VM state is truncated or not a state" };
  if (st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) return { missing: "the saved helper VM state is not private to this user" };
  return { state: statePath(dir, key), cmdline: m.cmdline, bytes: st.size };
}

const TMP_RE = /^\.tmp-(\d+)-(\d+)-/;

/** A state being written: `fd` goes to qemu; commit() renames it into place, abort() removes it. */
export interface SnapshotWriter {
  fd: number;
  commit(cmdline: string): Snapshot;
  abort(): void;
}

/** Remove the temporaries of runs that died while saving (pid gone or reused); never a live run's. */
export function sweepSnapshotTemps(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = TMP_RE.exec(name);
    if (m && !ownerAlive(m[1]!, m[2]!)) fs.rmSync(path.join(dir, name), { force: true });
  }
}

export function beginSnapshot(dir: string, key: string): SnapshotWriter {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  sweepSnapshotTemps(dir);
  const tmp = path.join(dir, `.tmp-${runTag()}-${key}${STATE_SUFFIX}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  let open = true;
  const close = () => {
    if (open) fs.closeSync(fd);
    open = false;
  };
  return {
    fd,
    commit(cmdline) {
      fs.fsyncSync(fd);
      close();
      const bytes = fs.statSync(tmp).size;
      if (bytes === 0) {
        fs.rmSync(tmp, { force: true });
        throw new Error("qemu wrote an empty state");
      }
      const metaTmp = `${tmp}${META_SUFFIX}`;
      fs.writeFileSync(metaTmp, `${JSON.stringify({ cmdline, bytes, savedAt: new Date().toISOString() })}\n`, { mode: 0o600 });
      fs.renameSync(tmp, statePath(dir, key));
      fs.renameSync(metaTmp, metaPath(dir, key));
      // states of other keys (an older qemu or helper image) are dead weight
      for (const name of fs.readdirSync(dir)) {
        if (!name.startsWith(".") && !name.startsWith(key)) fs.rmSync(path.join(dir, name), { force: true });
      }
      return { state: statePath(dir, key), cmdline, bytes };
    },
    abort() {
      close();
      fs.rmSync(tmp, { force: true });
    },
  };
}

/** Remove the snapshot for `key` (a resume of it failed). */
export function dropSnapshot(dir: string, key: string): void {
  fs.rmSync(metaPath(dir, key), { force: true });
  fs.rmSync(statePath(dir, key), { force: true });
}

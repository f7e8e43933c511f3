/**
 * What a task is and what it gets. The disk model (DiskInfo/Partition) is
 * filled by disk.ts, the one reader of `sfdisk --json`.
 *
 * Two context facts change while the table runs, and only these:
 * - `os.distro` is "unknown" until MountImage detects it (tasks before it must
 *   not rely on it);
 * - `disk` (and `rootPartition`) are re-read by `refreshDisk()`, which
 *   FixPartitionTable calls after growing the table.
 * Everything a task needs to know about WHEN it runs is on the Task (mounted,
 * excludable, fsResize, cloudInitSkip, families, modes); runner.ts decides.
 * The ordered table in tasks/index.ts is the single source of task order,
 * names and EXCLUDE_TASK_<Name> switches.
 */
import type { HelperParams } from "../src/protocol.ts";
import type { RunFn } from "./lib/exec.ts";

export interface Partition {
  /** 1-based partition number as the kernel names it (vda1 → 1). */
  number: number;
  dev: string;
  startSector: number;
  sizeSectors: number;
  /** msdos type ("83", "5", …) or GPT type GUID, lower-case. */
  type: string;
  /** msdos only: primary | extended | logical. */
  kind?: "primary" | "extended" | "logical";
  fsType?: string;
  uuid?: string;
  label?: string;
  /** Identifiers fstab can name it by: PARTUUID (msdos: <disk id>-<nn>) and GPT PARTLABEL. */
  partUuid?: string;
  partLabel?: string;
}

export interface DiskInfo {
  /** e.g. /dev/vda */
  dev: string;
  sizeBytes: number;
  sectorSize: number;
  /** sfdisk's "dos" label is "msdos" here (the one vocabulary of the helper). */
  table: "msdos" | "gpt" | "none";
  /** GPT only: first/last usable LBA. */
  firstLba?: number;
  lastLba?: number;
  partitions: Partition[];
}

export type OsFamily = "linux" | "windows" | "windows-legacy" | "freebsd" | "openbsd" | "netbsd";

export interface OsInfo {
  family: OsFamily;
  /** Linux distribution family (os/distro.ts detectDistro); "unknown" until MountImage sets it. */
  distro: "debian" | "redhat" | "suse" | "arch" | "gentoo" | "slackware" | "coreos" | "unknown";
}

export interface Props {
  /** Raw value of a property (upper-case name), undefined if unset. */
  get(name: string): string | undefined;
  /** The original's yes/no rules: yes/true/on/1/set → true, no/false/off/0 → false; empty → false
   *  with a warning; anything else → true with a warning. Unset → false. */
  bool(name: string): boolean;
}

export type { RunResult } from "./lib/exec.ts";

export interface TaskContext {
  params: HelperParams;
  props: Props;
  /** Target disk (the instance's disk 0); re-read by refreshDisk() after FixPartitionTable changed it. */
  disk: DiskInfo;
  /** Partition holding the root filesystem. */
  rootPartition: Partition;
  /** family: from OSFAMILY or detection before the first task; distro: set by MountImage. */
  os: OsInfo;
  /** Mount point of the image's root; valid only for mounted tasks. */
  root: string;
  /** Helper-private scratch directory (tmpfs). */
  scratch: string;
  info(msg: string): void;
  warn(msg: string): void;
  /** Run one of the helper's own tools (never a binary from the image); lib/exec.ts `run`.
   *  Throws on non-zero exit unless allowFail; secrets go in `input` (stdin), never in argv. */
  run: RunFn;
  /** Re-read the disk and the root partition (FixPartitionTable calls it after writing the table). */
  refreshDisk(): Promise<void>;
}

export interface Task {
  name: string;
  /** Needs the image mounted at ctx.root (skipped by EXCLUDE_MOUNTED_TASKS). */
  mounted: boolean;
  /** May be skipped by EXCLUDE_TASK_<NAME>. */
  excludable: boolean;
  /** Skipped by EXCLUDE_FILESYSTEMRESIZE_TASKS. */
  fsResize?: boolean;
  /** Skipped when CLOUD_INIT is set (cloud-init does it in the guest). */
  cloudInitSkip?: boolean;
  /** OS families the task applies to (default: all). */
  families?: OsFamily[];
  /** Modes the task runs in (default: create only). */
  modes?: readonly HelperParams["mode"][];
  run(ctx: TaskContext): Promise<void>;
}

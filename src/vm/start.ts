/**
 * How a helper VM starts: resumed from the saved state that fits this qemu,
 * helper image and machine, or booted cold — and a cold boot saves its state
 * for the runs after it (HELPER_RESUME=auto, the default). A saved state that
 * cannot be resumed (qemu cannot load it, or the resumed helper does not wake
 * within WAKE_TIMEOUT_MS of getting its disks) is removed and the run boots
 * cold instead: the helper has read and written nothing at that point, so the
 * run loses only the time it tried.
 */
import { log } from "../log.ts";
import { type HelperVmOptions, type HelperVmOutcome, QEMU, runHelperVm } from "./qemu.ts";
import { requireQemu } from "./qemu-bin.ts";
import { beginSnapshot, dropSnapshot, findSnapshot, snapshotKey, type SnapshotWriter, sweepSnapshotTemps } from "./snapshot.ts";

export type ResumePolicy = "auto" | "off";

export interface StartChoice {
  mode: "resume" | "cold";
  /** One line: why this mode. */
  reason: string;
}

type StartOptions = Pick<HelperVmOptions, "qemu" | "image" | "accel" | "memoryMiB" | "debug">;

/** The key of these options' saved state, and the state (or why there is none). */
function lookup(o: StartOptions, dir: string): { key: string; found: ReturnType<typeof findSnapshot> } {
  const key = snapshotKey({ qemu: requireQemu(o.qemu ?? QEMU), files: o.image, accel: o.accel, memoryMiB: o.memoryMiB, debug: !!o.debug });
  return { key, found: findSnapshot(dir, key, o.memoryMiB) };
}

/** What the next helper VM with these options would do (doctor, logs). */
export function startChoice(o: StartOptions, dir: string, policy: ResumePolicy): StartChoice & { key?: string } {
  if (policy === "off") return { mode: "cold", reason: "HELPER_RESUME=off" };
  const { key, found } = lookup(o, dir);
  if ("missing" in found) return { mode: "cold", reason: `${found.missing}; this run saves one`, key };
  return { mode: "resume", reason: `saved state ${(found.bytes / 1048576).toFixed(0)} MiB`, key };
}

export async function startHelperVm(o: HelperVmOptions, dir: string, policy: ResumePolicy): Promise<HelperVmOutcome> {
  if (policy === "off") return runHelperVm(o);
  sweepSnapshotTemps(dir);
  const { key, found } = lookup(o, dir);
  let fellBack: string | undefined;
  if ("state" in found) {
    const out = await runHelperVm({ ...o, resume: found });
    if (!out.resumeFailed || out.aborted || out.timedOut) return out;
    log.warn(`helper VM: the saved state could not be resumed (${out.resumeFailed}): removing it and booting instead`);
    dropSnapshot(dir, key);
    fellBack = out.resumeFailed;
  }
  let writer: SnapshotWriter | undefined;
  try {
    writer = beginSnapshot(dir, key);
  } catch (e) {
    log.warn(`helper VM: cannot save its state in ${dir} (${(e as Error).message}); booting without saving`);
  }
  try {
    const out = await runHelperVm({ ...o, save: writer });
    if (fellBack) out.fellBack = fellBack;
    if (out.saveError) log.warn(`helper VM: its state was not saved: ${out.saveError}`);
    else if (out.saved) log.info(`helper VM: state saved (${(out.saved.bytes / 1048576).toFixed(0)} MiB): later runs resume it`);
    return out;
  } finally {
    writer?.abort();
  }
}

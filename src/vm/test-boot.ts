/**
 * A no-op boot of the helper VM: a throwaway 64 MiB disk, EXCLUDE_ALL_TASKS,
 * nothing else. Used by `snf-image doctor` and by the KVM probe (accel-probe.ts).
 */
import fs from "node:fs";
import path from "node:path";
import { onCleanup } from "../cleanup.ts";
import { runTempDir } from "../leftovers.ts";
import { diskSerial, encodeParams, type HelperParamsInput, newSeed, PROTOCOL_VERSION } from "../protocol.ts";
import { makeProbeDisk } from "./probe-disk.ts";
import { runHelperVm, type HelperVmOptions, type HelperVmOutcome } from "./qemu.ts";
import { type ResumePolicy, startHelperVm } from "./start.ts";

/** The parameter document of the no-op test boot: read the disk, run no task. */
export function probeParams(): HelperParamsInput {
  return {
    protocol: PROTOCOL_VERSION,
    mode: "create",
    hostname: "snf-image-probe",
    imgFormat: "diskdump",
    properties: { EXCLUDE_ALL_TASKS: "yes", OSFAMILY: "linux", ROOT_PARTITION: "1" },
    disks: [{ index: 0, serial: diskSerial(0) }],
    now: Math.floor(Date.now() / 1000),
    seed: newSeed(),
  };
}

/** `snapshots`: start as create would (resume or cold boot + save); without it, always a cold boot. */
export async function testBootHelper(o: Omit<HelperVmOptions, "disks" | "params">, snapshots?: { dir: string; policy: ResumePolicy }): Promise<HelperVmOutcome> {
  const dir = runTempDir("image");
  const undo = onCleanup(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    const disk = path.join(dir, "disk.raw");
    await makeProbeDisk(disk);
    const vm: HelperVmOptions = { ...o, disks: [{ path: disk, serial: diskSerial(0) }], params: encodeParams(probeParams()) };
    return await (snapshots ? startHelperVm(vm, snapshots.dir, snapshots.policy) : runHelperVm(vm));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    undo();
  }
}

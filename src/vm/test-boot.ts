/**
 * A no-op boot of the helper VM: a throwaway 64 MiB disk, EXCLUDE_ALL_TASKS,
 * nothing else. Used by `snf-image doctor` and by the KVM probe (accel-probe.ts).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { onCleanup } from "../cleanup.ts";
import { diskSerial, encodeParams, type HelperParamsInput, PROTOCOL_VERSION } from "../protocol.ts";
import { makeProbeDisk } from "./probe-disk.ts";
import { runHelperVm, type HelperVmOptions, type HelperVmOutcome } from "./qemu.ts";

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
  };
}

export async function testBootHelper(o: Omit<HelperVmOptions, "disks" | "paramsFile">): Promise<HelperVmOutcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-probe-"));
  fs.chmodSync(dir, 0o700);
  const undo = onCleanup(`remove ${dir}`, () => fs.rmSync(dir, { recursive: true, force: true }));
  try {
    const disk = path.join(dir, "disk.raw");
    await makeProbeDisk(disk);
    const paramsFile = path.join(dir, "params.json");
    fs.writeFileSync(paramsFile, encodeParams(probeParams()), { mode: 0o600 });
    return await runHelperVm({ ...o, disks: [{ path: disk, serial: diskSerial(0) }], paramsFile });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    undo();
  }
}

/**
 * doctor: is what a previous instance left on a reused disk wiped before a
 * new instance can read it? snf-image overwrites only the image's own bytes
 * on disk 0 and, with ZERO_DISK_TAIL, zeroes the rest of disk 0 where that is
 * cheap; Ganeti's cluster setting prealloc_wipe_disks wipes every new disk
 * (all of disk 0 and every other disk) before the OS is installed. The
 * setting is read from `gnt-cluster info`.
 */
import type { Config } from "../config.ts";
import { SBIN, SSCONF_CLUSTER, runGanetiTool } from "./ganeti-check.ts";
import { type CheckOutcome, ok, warn } from "./schema.ts";
import fs from "node:fs";

/** prealloc_wipe_disks from `gnt-cluster info` output (pure); null when absent. */
export function parsePreallocWipe(text: string): boolean | null {
  const m = /prealloc(?:ation)?[ _]wipe[ _]disks\s*:\s*(\w+)/i.exec(text);
  if (!m) return null;
  return /^(true|yes|on|1)$/i.test(m[1]!);
}

function tailText(config: Config): string {
  switch (config.ZERO_DISK_TAIL) {
    case "always":
      return "ZERO_DISK_TAIL=always zeroes disk 0 past the image";
    case "cheap":
      return "ZERO_DISK_TAIL=cheap zeroes disk 0 past the image on file disks and on block devices that offload write-zeroes only";
    default:
      return "ZERO_DISK_TAIL=no leaves disk 0 past the image as it was";
  }
}

const FIX_GANETI = "gnt-cluster modify --prealloc-wipe-disks yes (Ganeti then wipes every new disk before the OS is installed)";

export async function checkDiskWipe(config: Config): Promise<CheckOutcome> {
  const gnt = Bun.which("gnt-cluster", { PATH: SBIN });
  const tail = tailText(config);
  if (!gnt) {
    return warn(`Ganeti is not installed on this node: prealloc_wipe_disks unknown; ${tail}; other disks are not touched`, `install Ganeti, then run snf-image doctor again; meanwhile ${config.ZERO_DISK_TAIL === "always" ? "keep ZERO_DISK_TAIL=always" : "consider ZERO_DISK_TAIL=always"}`);
  }
  if (!fs.existsSync(SSCONF_CLUSTER)) {
    return warn(`Ganeti is installed but this node is in no cluster: prealloc_wipe_disks unknown; ${tail}`, "join this node to a cluster, then run snf-image doctor again");
  }
  const r = await runGanetiTool([gnt, "info"]);
  const v = r.code === 0 && !r.timedOut ? parsePreallocWipe(r.out) : null;
  if (v === null) {
    const why = r.timedOut ? "did not answer" : r.code !== 0 ? `failed (exit ${r.code}): ${r.out.trim().split("\n").pop() ?? ""}` : "printed no prealloc_wipe_disks";
    return warn(`gnt-cluster info ${why}: prealloc_wipe_disks unknown; ${tail}`, "run snf-image doctor on the master node");
  }
  if (v) return ok(`prealloc_wipe_disks is True: Ganeti wipes every new disk, so no data of a previous instance is readable; ${tail}`);
  return warn(
    `prealloc_wipe_disks is False: a reused disk keeps the previous instance's data where snf-image does not write: ${tail}; disks other than disk 0 are not touched at all`,
    FIX_GANETI,
  );
}

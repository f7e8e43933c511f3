/**
 * DisableRemoteDesktopConnections (windows, windows-legacy): Remote Desktop
 * stays off until setup has set the password. The image's SYSTEM hive gets
 * fDenyTSConnections=1 under the control set Select\Current names (an
 * in-place REG_DWORD write, lib/hive.ts); the value it had is put back at
 * first boot: by SetupComplete.cmd (NT 6+, after the password script ran)
 * or by a script cmdlines.txt runs at the end of mini-setup (XP/2003).
 */
import type { Task, TaskContext } from "../task.ts";
import { currentControlSet, Hive } from "../lib/hive.ts";
import { resolveInRoot, statIn } from "../lib/safepath.ts";
import { addCmdScript, LEGACY_RDP_SCRIPT } from "../os/windows-legacy.ts";
import { findCi, RDP_BLOCK_BEGIN, RDP_BLOCK_END, rdpRestoreCommand, setSetupCompleteBlock, SYSTEM_HIVE, TS_KEY, TS_VALUE, winPath } from "../os/windows.ts";

export async function disableRemoteDesktop(ctx: TaskContext): Promise<void> {
  const hivePath = findCi(ctx.root, SYSTEM_HIVE);
  if (hivePath === undefined || !statIn(ctx.root, hivePath)?.isFile()) throw new Error("the image has no Windows\\System32\\config\\SYSTEM hive");
  const h = Hive.open(resolveInRoot(ctx.root, hivePath), { write: true });
  try {
    const key = `${currentControlSet(h)}\\${TS_KEY}`;
    const old = h.getDword(key, TS_VALUE);
    if (old === undefined) throw new Error(`the SYSTEM hive has no ${key}\\${TS_VALUE} to turn Remote Desktop off with`);
    // the restore first: if it cannot be written, the hive stays untouched
    const cmd = rdpRestoreCommand(old);
    const where = ctx.os.family === "windows-legacy" ? addCmdScript(ctx.root, LEGACY_RDP_SCRIPT, ["@echo off", cmd]) : setSetupCompleteBlock(ctx.root, RDP_BLOCK_BEGIN, RDP_BLOCK_END, [cmd]);
    h.setDword(key, TS_VALUE, 1);
    ctx.info(`Remote Desktop off (${key}\\${TS_VALUE} was ${old}, now 1) until ${winPath(where)} restores it at first boot`);
  } finally {
    h.close();
  }
}

export const task: Task = {
  name: "DisableRemoteDesktopConnections",
  mounted: true,
  excludable: true,
  cloudInitSkip: true,
  families: ["windows", "windows-legacy"],
  run: disableRemoteDesktop,
};

/**
 * import / export: raw whole-disk streams for Ganeti's backup and move.
 * export writes disk N to stdout (only data there; diagnostics on stderr) and
 * the byte count to EXP_SIZE_FD; import reads stdin onto disk N, keeping zero
 * runs cheap.
 */
import { exportDisk as streamOut, importDisk as streamIn } from "./disk/reader.ts";
import type { TransferEnv } from "./ganeti/env.ts";
import { log } from "./log.ts";

export async function exportDisk(env: TransferEnv, signal: AbortSignal): Promise<void> {
  const t = env.transfer;
  const t0 = performance.now();
  const bytes = await streamOut(t.diskPath, 1, { sizeFd: t.sizeFd ?? null, signal });
  log.info(`exported disk ${t.index} (${t.diskPath}): ${bytes} bytes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

export async function importDisk(env: TransferEnv, signal: AbortSignal): Promise<void> {
  const t = env.transfer;
  const r = await streamIn(Bun.stdin.stream(), t.diskPath, { signal });
  log.info(`imported disk ${t.index} (${t.diskPath}): ${r.bytes} bytes in ${(r.ms / 1000).toFixed(1)} s (${r.zeroBytes} zero bytes not written)`);
}

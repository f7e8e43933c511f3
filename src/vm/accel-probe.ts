/**
 * HELPER_ACCEL=auto: KVM only where it really boots the helper. When the
 * host looks KVM-capable (accel.ts), the helper is booted once under KVM with
 * no disk change and a short timeout; the verdict is cached next to the
 * helper image (a rebuilt helper, another host kernel or another qemu probes
 * again). A KVM that hangs or fails costs one probe, then TCG is used.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import { log } from "../log.ts";
import { decideAccel, probeHost } from "./accel.ts";
import type { HelperVmOptions } from "./qemu.ts";
import { requireQemu } from "./qemu-bin.ts";
import { testBootHelper } from "./test-boot.ts";

export const PROBE_FILE = "accel-probe.json";
export const PROBE_TIMEOUT_SEC = 30;

const VerdictSchema = v.object({ key: v.string(), accel: v.picklist(["kvm", "tcg"]), reason: v.string(), ms: v.number() });

type VmBase = Pick<HelperVmOptions, "image" | "qemu" | "memoryMiB" | "user" | "signal">;

/** What the verdict depends on. */
export function probeKey(o: VmBase): string {
  const qemu = requireQemu(o.qemu ?? "qemu-system-x86_64");
  const st = fs.statSync(fs.realpathSync(qemu));
  return [os.release(), `${fs.realpathSync(qemu)}@${st.mtimeMs}`, o.image.manifest.built, o.image.kernel].join("|");
}

/** Boot the helper under KVM once; true when it answered SUCCESS within the timeout. */
export async function kvmBootsHelper(o: VmBase & { timeoutSec?: number }): Promise<{ ok: boolean; reason: string; ms: number }> {
  const out = await testBootHelper({ ...o, accel: "kvm", softTimeoutSec: o.timeoutSec ?? PROBE_TIMEOUT_SEC, hardTimeoutSec: 3 });
  const ms = Math.round(out.durationMs);
  if (out.result?.ok) return { ok: true, reason: `KVM booted the helper in ${(ms / 1000).toFixed(1)} s`, ms };
  const why = out.timedOut
    ? `did not answer within ${o.timeoutSec ?? PROBE_TIMEOUT_SEC} s`
    : out.qemuError
      ? `qemu failed: ${out.qemuError}`
      : out.result && !out.result.ok
        ? `helper error: ${out.result.error}`
        : `qemu exited with code ${out.exitCode} without a result`;
  return { ok: false, reason: `KVM probe boot ${why}`, ms };
}

export async function chooseAccel(setting: "auto" | "kvm" | "tcg", o: VmBase & { cacheDir?: string }): Promise<{ accel: "kvm" | "tcg"; reason: string }> {
  const d = decideAccel(setting, probeHost());
  if (d.warning) log.warn(d.warning);
  if (setting !== "auto" || d.accel === "tcg") return { accel: d.accel, reason: d.reason };
  const file = o.cacheDir ? path.join(o.cacheDir, PROBE_FILE) : null;
  const key = probeKey(o);
  if (file) {
    try {
      const cached = v.parse(VerdictSchema, JSON.parse(fs.readFileSync(file, "utf8")));
      if (cached.key === key) return { accel: cached.accel, reason: `${cached.reason} (cached probe)` };
    } catch {}
  }
  log.info(`the host looks KVM-capable: probing with a test boot of the helper (at most ${PROBE_TIMEOUT_SEC} s, once)`);
  const p = await kvmBootsHelper(o);
  const verdict = { key, accel: p.ok ? ("kvm" as const) : ("tcg" as const), reason: p.ok ? p.reason : `software emulation (tcg): ${p.reason}`, ms: p.ms };
  if (!p.ok) log.warn(`${p.reason}; using TCG (set HELPER_ACCEL=kvm to force KVM)`);
  if (file) {
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(verdict), { mode: 0o644 });
      fs.renameSync(`${file}.tmp`, file);
    } catch (e) {
      log.debug(`cannot cache the KVM probe in ${file}: ${(e as Error).message}`);
    }
  }
  return { accel: verdict.accel, reason: verdict.reason };
}

/**
 * doctor: which accelerator `create` would use and why (KVM usable or not),
 * and a real test boot of the helper VM under it, timed.
 */
import type { Config } from "../config.ts";
import { errorMessage } from "../errors.ts";
import { type AccelProbe, decideAccel, probeHost } from "../vm/accel.ts";
import type { HelperImage } from "./helper-check.ts";
import { testBootHelper } from "../vm/test-boot.ts";
import { snapshotDir } from "../vm/snapshot.ts";
import { startChoice } from "../vm/start.ts";
import { type CheckOutcome, fail, ok, warn } from "./schema.ts";

export interface AccelDecision {
  outcome: CheckOutcome;
  /** null: booting would hang or cannot start (the boot is skipped). */
  accel: "kvm" | "tcg" | null;
}

/** Facts behind the decision, one line each (pure). */
export function accelFacts(p: AccelProbe): string[] {
  return [
    `/dev/kvm: ${p.devKvmUsable ? "present and read-write" : "missing or not accessible"}`,
    `CPU virtualization flags (vmx/svm): ${p.cpuHasVirt ? "yes" : "no"}`,
    `kvm_pvm module: ${p.pvm ? "loaded (PVM: stock kernels hang or die under it)" : "not loaded"}`,
  ];
}

/** The accel check from the HELPER_ACCEL setting and the host probe (pure). */
export function judgeAccel(setting: Config["HELPER_ACCEL"], p: AccelProbe): AccelDecision {
  const details = accelFacts(p);
  let d: ReturnType<typeof decideAccel>;
  try {
    d = decideAccel(setting, p);
  } catch (e) {
    return { accel: null, outcome: fail(`HELPER_ACCEL=${setting}: ${errorMessage(e)}`, "set HELPER_ACCEL=auto (TCG is used where KVM is unusable)", { details }) };
  }
  if (d.warning) {
    return {
      accel: null,
      outcome: fail(`HELPER_ACCEL=${setting}: ${d.warning}`, "set HELPER_ACCEL=auto so create falls back to TCG", { details, accel: d.accel }),
    };
  }
  if (d.accel === "kvm") return { accel: "kvm", outcome: ok(`create uses KVM: ${d.reason}`, { details, accel: "kvm" }) };
  if (setting === "tcg") return { accel: "tcg", outcome: ok(`create uses TCG (HELPER_ACCEL=tcg)`, { details, accel: "tcg" }) };
  return {
    accel: "tcg",
    outcome: warn(`KVM unusable, create uses ${d.reason}; the helper runs ~10x slower`, "use a host with VT-x/AMD-V and the kvm_intel/kvm_amd module for fast deploys", { details, accel: "tcg" }),
  };
}

export function checkAccel(config: Config): AccelDecision {
  return judgeAccel(config.HELPER_ACCEL, probeHost());
}

export async function checkHelperBoot(o: { config: Config; image: HelperImage; accel: "kvm" | "tcg"; signal?: AbortSignal }): Promise<CheckOutcome> {
  const { config } = o;
  const console: string[] = [];
  try {
    const vmBase = { image: o.image, qemu: config.QEMU, accel: o.accel, memoryMiB: config.HELPER_MEMORY, debug: false };
    const choice = startChoice(vmBase, snapshotDir(config.HELPER_DIR), config.HELPER_RESUME);
    const outcome = await testBootHelper({
      image: o.image,
      qemu: config.QEMU,
      accel: o.accel,
      memoryMiB: config.HELPER_MEMORY,
      user: config.HELPER_USER,
      softTimeoutSec: config.HELPER_SOFT_TIMEOUT,
      hardTimeoutSec: config.HELPER_HARD_TIMEOUT,
      debug: false,
      signal: o.signal,
      onConsoleLine: (l) => {
        console.push(l);
        if (console.length > 20) console.shift();
      },
    }, { dir: snapshotDir(config.HELPER_DIR), policy: config.HELPER_RESUME });
    const mode =
      outcome.start.mode === "resume"
        ? `resumed from its saved state (${choice.reason}), disks attached after ${((outcome.start.readyMs ?? 0) / 1000).toFixed(2)} s`
        : outcome.saved
          ? `cold boot (${choice.reason}): state saved, create resumes it from now on`
          : `cold boot (${choice.reason})${outcome.saveError ? `; saving its state failed: ${outcome.saveError}` : ""}`;
    const secs = (outcome.durationMs / 1000).toFixed(1);
    const extra = { accel: o.accel, bootMs: outcome.durationMs, details: console.slice(-5).map((l) => `console: ${l}`) };
    if (outcome.result?.ok) return ok(`helper VM answered SUCCESS in ${secs} s under ${o.accel.toUpperCase()}: ${mode}`, extra);
    if (outcome.timedOut)
      return fail(`helper VM did not answer within HELPER_SOFT_TIMEOUT=${config.HELPER_SOFT_TIMEOUT} s under ${o.accel.toUpperCase()}`, o.accel === "kvm" ? "set HELPER_ACCEL=tcg and check /dev/kvm" : "raise HELPER_SOFT_TIMEOUT or rebuild the helper (snf-image-update-helper)", extra);
    if (outcome.aborted) return fail("test boot cancelled", "run snf-image doctor again", extra);
    if (outcome.result && !outcome.result.ok) return fail(`helper VM answered ERROR: ${outcome.result.error}`, "rebuild the helper (snf-image-update-helper); run with HELPER_DEBUG=yes for its console", extra);
    const how = outcome.qemuError ? `qemu failed: ${outcome.qemuError}` : outcome.signal ? `qemu was killed by ${outcome.signal}` : `qemu exited with code ${outcome.exitCode} without a result`;
    return fail(`helper VM test boot failed after ${secs} s: ${how}`, "check qemu, HELPER_USER and HELPER_MEMORY; rebuild the helper (snf-image-update-helper)", extra);
  } catch (e) {
    return fail(`helper VM test boot could not start: ${errorMessage(e)}`, "fix the cause named above", { accel: o.accel });
  }
}

/**
 * `snf-image doctor`: runs every check in order and builds the report.
 * The node can deploy (exit 0) exactly when no check failed.
 */
import { PROTOCOL_VERSION } from "../protocol.ts";
import { VERSION } from "../version.ts";
import { checkAccel, checkHelperBoot } from "./accel-check.ts";
import { checkConfig } from "./config-check.ts";
import { checkGaneti } from "./ganeti-check.ts";
import { checkDiskWipe } from "./wipe-check.ts";
import { checkHelperImage } from "./helper-check.ts";
import { checkImageDir } from "./images.ts";
import { checkLeftovers } from "./leftovers-check.ts";
import { checkOsDefinition } from "./osdef-check.ts";
import { checkQemu } from "./qemu-check.ts";
import { type CheckId, type CheckOutcome, type CheckResult, type DoctorReport, fail, warn } from "./schema.ts";
import { checkHelperUser } from "./user-check.ts";
import { checkImageVerify } from "./verify-check.ts";
import { configPath } from "../config.ts";

export interface DoctorOptions {
  env?: Record<string, string | undefined>;
  /** Skip the helper test boot (reported as a warning). */
  noBoot?: boolean;
  signal?: AbortSignal;
  /** Called as each check finishes (for live output). */
  onCheck?: (c: CheckResult) => void;
}

export async function runDoctor(o: DoctorOptions = {}): Promise<DoctorReport> {
  const env = o.env ?? process.env;
  const checks: CheckResult[] = [];
  const timed = async <T extends { outcome: CheckOutcome } | CheckOutcome>(id: CheckId, f: () => T | Promise<T>): Promise<T> => {
    const t0 = performance.now();
    let r: T;
    try {
      r = await f();
    } catch (e) {
      r = fail(`check crashed: ${(e as Error)?.message ?? String(e)}`, "report this as a bug in snf-image doctor") as T;
    }
    const outcome = ("outcome" in r ? r.outcome : r) as CheckOutcome;
    const c: CheckResult = { id, ...outcome, durationMs: Math.round(performance.now() - t0) };
    checks.push(c);
    o.onCheck?.(c);
    return r;
  };

  const { config } = await timed("config", () => checkConfig(env));
  await timed("leftovers", () => checkLeftovers());
  await timed("image-dir", () => checkImageDir(config.IMAGE_DIR));
  await timed("image-verify", () => checkImageVerify(config));
  const helper = await timed("helper-image", () => checkHelperImage(config.HELPER_DIR));
  const qemu = await timed("qemu", () => checkQemu(config.QEMU));
  const accel = await timed("accel", () => checkAccel(config));
  const user = await timed("helper-user", () => checkHelperUser(config.HELPER_USER));
  await timed("helper-boot", () => {
    const skip = (why: string, fix: string) => warn(`test boot skipped: ${why}`, fix);
    if (o.noBoot) return skip("--no-boot given", "run snf-image doctor without --no-boot");
    if (!helper.image) return fail("test boot skipped: no usable helper image (see helper-image)", "run snf-image-update-helper, then snf-image doctor again");
    if (!qemu.path) return fail("test boot skipped: qemu missing (see qemu)", "install qemu-system-x86");
    if (!accel.accel) return fail("test boot skipped: it would hang or cannot start under the configured accelerator (see accel)", "set HELPER_ACCEL=auto");
    if (user.status === "fail") return fail("test boot skipped: HELPER_USER unusable (see helper-user)", "fix HELPER_USER");
    return checkHelperBoot({ config, image: helper.image, accel: accel.accel, signal: o.signal });
  });
  await timed("os-definition", () => checkOsDefinition(env));
  await timed("ganeti", () => checkGaneti());
  await timed("disk-wipe", () => checkDiskWipe(config));

  return {
    version: VERSION,
    protocol: PROTOCOL_VERSION,
    configFile: configPath(env),
    ok: checks.every((c) => c.status !== "fail"),
    checks,
  };
}

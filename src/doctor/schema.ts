/**
 * The shape of `snf-image doctor --json`: a report of checks, each with a
 * status, a one-line finding and the fix. Tests validate against it.
 */
import * as v from "valibot";
import { IMAGE_FORMATS, oneLine } from "../protocol.ts";

export const CHECK_IDS = [
  "config",
  "leftovers",
  "image-dir",
  "image-verify",
  "helper-image",
  "qemu",
  "accel",
  "helper-boot",
  "helper-user",
  "os-definition",
  "ganeti",
  "disk-wipe",
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

export const CHECK_STATUSES = ["ok", "warn", "fail"] as const;

const OneLine = v.pipe(v.string(), v.regex(/^[^\n\r]*$/, "must be one line"));

export const ImageEntrySchema = v.object({
  name: v.string(),
  /** From the magic (qcow2) or the name: NAME.diskdump, NAME.extdump, NAME.ntfsdump, NAME.qcow2 (null: unknown). */
  format: v.nullable(v.picklist(IMAGE_FORMATS)),
  /** From the magic bytes. */
  compression: v.nullable(v.picklist(["gzip", "xz", "zstd"])),
  sizeBytes: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Default properties from NAME.meta (snf-image-creator's format), when there is one. */
  properties: v.optional(v.record(v.string(), v.string())),
  /** Why NAME.meta is unusable (create would fail with this line). */
  metaError: v.optional(v.string()),
});
export type ImageEntry = v.InferOutput<typeof ImageEntrySchema>;

export const CheckResultSchema = v.object({
  id: v.picklist(CHECK_IDS),
  status: v.picklist(CHECK_STATUSES),
  /** What was found, one line. */
  finding: OneLine,
  /** What to do about it, one line ("" when nothing is to be done). */
  fix: OneLine,
  durationMs: v.pipe(v.number(), v.minValue(0)),
  /** Extra facts, one line each. */
  details: v.optional(v.array(OneLine)),
  /** image-dir only. */
  images: v.optional(v.array(ImageEntrySchema)),
  /** accel / helper-boot: the accelerator `create` would use. */
  accel: v.optional(v.picklist(["kvm", "tcg"])),
  /** helper-boot: wall time of the test boot. */
  bootMs: v.optional(v.number()),
});
export type CheckResult = v.InferOutput<typeof CheckResultSchema>;

export const DoctorReportSchema = v.object({
  /** snf-image version. */
  version: v.string(),
  protocol: v.number(),
  /** The config file read, or null when only defaults were used. */
  configFile: v.nullable(v.string()),
  /** true exactly when no check failed: the node can deploy. */
  ok: v.boolean(),
  checks: v.pipe(v.array(CheckResultSchema), v.minLength(1)),
});
export type DoctorReport = v.InferOutput<typeof DoctorReportSchema>;

/** What a check function returns; the runner adds id and duration. */
export type CheckOutcome = Omit<CheckResult, "id" | "durationMs">;

export const ok = (finding: string, extra: Partial<CheckOutcome> = {}): CheckOutcome => ({ status: "ok", finding: line(finding), fix: "", ...extra });
export const warn = (finding: string, fix: string, extra: Partial<CheckOutcome> = {}): CheckOutcome => ({ status: "warn", finding: line(finding), fix: line(fix), ...extra });
export const fail = (finding: string, fix: string, extra: Partial<CheckOutcome> = {}): CheckOutcome => ({ status: "fail", finding: line(finding), fix: line(fix), ...extra });

/** Force one line (findings often quote tool output). */
export function line(s: string): string {
  return oneLine(s);
}

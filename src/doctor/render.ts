/** Human output of `snf-image doctor`. */
import type { CheckResult, DoctorReport } from "./schema.ts";

const MARK = { ok: "[ OK ]", warn: "[WARN]", fail: "[FAIL]" } as const;

export function renderCheck(c: CheckResult, verbose = false): string {
  const lines = [`${MARK[c.status]} ${c.id}: ${c.finding}`];
  if (c.fix) lines.push(`       fix: ${c.fix}`);
  const details = c.details ?? [];
  const show = verbose || c.id === "image-dir" || c.status !== "ok" ? details : [];
  for (const d of show.slice(0, verbose ? undefined : 20)) lines.push(`       - ${d}`);
  if (!verbose && show.length > 20) lines.push(`       … ${show.length - 20} more (--verbose)`);
  return lines.join("\n");
}

export function renderSummary(r: DoctorReport): string {
  const n = (s: string) => r.checks.filter((c) => c.status === s).length;
  return r.ok
    ? `snf-image ${r.version}: ready to deploy (${n("ok")} ok, ${n("warn")} warning(s))`
    : `snf-image ${r.version}: NOT ready to deploy: ${n("fail")} check(s) failed (${r.checks.filter((c) => c.status === "fail").map((c) => c.id).join(", ")})`;
}

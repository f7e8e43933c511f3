/**
 * The helper VM's fixed cost: the empty boot `snf-image doctor` does
 * (EXCLUDE_ALL_TASKS on a 64 MiB probe disk), with HELPER_DEBUG's guest-clock
 * marks split into phases. Several helper images can be compared A/B,
 * interleaved in the same run (same load), medians per phase:
 *
 *   bun bench/boot.ts [--runs N] [--accel tcg|kvm] [HELPER_DIR ...]   (default dist/helper)
 */
import { readFileSync } from "node:fs";
import { loadHelperImage } from "../src/helper-image/load.ts";
import { testBootHelper } from "../src/vm/test-boot.ts";
import { HELPER_DIR } from "../test/lib/deploy.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(name);
  if (i < 0) return dflt;
  const v = argv[i + 1]!;
  argv.splice(i, 2);
  return v;
};
const runs = Number(opt("--runs", "5")) || 5;
const accel = opt("--accel", "tcg") as "tcg" | "kvm";
const dirs = argv.length ? argv : [HELPER_DIR];

/**
 * Phases of one debug boot: the host's arrival time (s since the boot was
 * started) of the kernel's first line, /init, and every shim/helper mark. Host
 * time, not the guest clock: under TCG on a loaded host the guest loses ticks.
 */
export function phases(lines: { t: number; line: string }[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const { t, line } of lines) {
    if (/^\[\s*0\.000000\] Linux version/.test(line)) m.set("kernel started", t);
    const r = /snf-image shim: [\d.]+ s: (.+)$/.exec(line) ?? /snf-image-helper: guest clock [\d.]+ s: (.+)$/.exec(line);
    if (r && !m.has(r[1]!)) m.set(r[1]!, t);
  }
  return m;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows = dirs.map(() => [] as { total: number; marks: Map<string, number> }[]);
for (let i = 0; i < runs; i++) {
  for (const [k, dir] of dirs.entries()) {
    const lines: { t: number; line: string }[] = [];
    const t0 = performance.now();
    const o = await testBootHelper({
      image: loadHelperImage(dir),
      accel,
      memoryMiB: 256,
      user: "nobody",
      softTimeoutSec: 300,
      hardTimeoutSec: 10,
      debug: true,
      onConsoleLine: (line) => lines.push({ t: (performance.now() - t0) / 1000, line }),
    });
    if (!o.result?.ok) {
      console.error(lines.slice(-20).map((l) => l.line).join("\n"));
      throw new Error(`${dir}: test boot failed (${JSON.stringify(o.result)})`);
    }
    const marks = phases(lines);
    rows[k]!.push({ total: o.durationMs / 1000, marks });
    console.log(`run ${i + 1}/${runs} ${dir}: ${(o.durationMs / 1000).toFixed(2)} s; ${[...marks].map(([n, t]) => `${n} ${t.toFixed(2)}`).join(", ")}`);
  }
}
console.log(`\nempty helper boot (as doctor's), ${accel.toUpperCase()}, ${runs} runs interleaved, medians (host clock, s since the boot started):`);
for (const [k, dir] of dirs.entries()) {
  const names = [...new Set(rows[k]!.flatMap((r) => [...r.marks.keys()]))];
  console.log(`${dir}: round trip ${median(rows[k]!.map((r) => r.total)).toFixed(2)} s; phases (median s, each from the previous mark):`);
  let prev = "boot started";
  for (const n of names) {
    const d = median(rows[k]!.map((r) => (r.marks.get(n) ?? NaN) - (r.marks.get(prev) ?? 0)));
    console.log(`  ${`${prev} → ${n}`.padEnd(60)} ${d.toFixed(2)}`);
    prev = n;
  }
  const end = median(rows[k]!.map((r) => r.total - (r.marks.get(prev) ?? 0)));
  console.log(`  ${`${prev} → qemu exited`.padEnd(60)} ${end.toFixed(2)}`);
}
console.log(`load average: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);

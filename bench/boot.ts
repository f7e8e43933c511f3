/**
 * The helper VM's fixed cost: the empty boot `snf-image doctor` does
 * (EXCLUDE_ALL_TASKS on a 64 MiB probe disk), with HELPER_DEBUG's guest-clock
 * marks split into phases. Several helper images can be compared A/B,
 * interleaved in the same run (same load), medians per phase:
 *
 * Each helper image is measured both ways it can start (--start both, the
 * default): a cold boot, and a resume of the state a warm-up boot saved
 * (HELPER_RESUME=auto, as create and doctor do).
 *
 *   bun bench/boot.ts [--runs N] [--accel tcg|kvm] [--start cold|resume|both] [HELPER_DIR ...]
 *                                                          (default dist/helper)
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { descendants } from "./proc.ts";
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
const start = opt("--start", "both");
const dirs = argv.length ? argv : [HELPER_DIR];
const modes = start === "both" ? (["cold", "resume"] as const) : ([start as "cold" | "resume"] as const);
const snapRoot = mkdtempSync("/var/tmp/snf-bench-boot-");
const variants = dirs.flatMap((dir, i) => modes.map((mode) => ({ dir, mode, label: `${dir} [${mode}]`, snapshots: mode === "resume" ? `${snapRoot}/${i}` : undefined })));

/** The qemu this process started (a descendant: qemu runs on a setpriv/unshare/timeout leash), or null. */
function qemuChild(): number | null {
  return descendants([process.pid]).find((p) => p.pid !== process.pid && p.comm.startsWith("qemu-system"))?.pid ?? null;
}
/** Peak RSS (VmHWM) of a process in MiB, 0 when gone. */
function hwmMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}
/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ
  } catch {
    return NaN;
  }
}

/**
 * Phases of one debug boot: the host's arrival time (s since the boot was
 * started) of the kernel's first line, /init, and every shim/helper mark. Host
 * time, not the guest clock: under TCG on a loaded host the guest loses ticks.
 */
export function phases(lines: { t: number; line: string }[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const { t, line } of lines) {
    if (/^\[\s*0\.000000\] Linux version/.test(line)) m.set("kernel started", t);
    // (a kernel message may land on the same console line as a mark: it starts with "[")
    const r = /snf-image shim: [\d.]+ s: ([^[]+)/.exec(line) ?? /snf-image-helper: guest clock [\d.]+ s: ([^[]+)/.exec(line);
    const name = r?.[1]?.trim();
    if (name && !m.has(name)) m.set(name, t);
  }
  return m;
}

/** The same phases on qemu's CPU-time clock (less sensitive to other load than wall time). */
function cpuPhases(lines: { cpu: number; line: string }[]): Map<string, number> {
  return phases(lines.map((l) => ({ t: l.cpu, line: l.line })));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows = variants.map(() => [] as { total: number; marks: Map<string, number>; cpu: number; cpuMarks: Map<string, number>; rss: number }[]);
// warm-up: each resumed variant's first boot saves its state
for (const v of variants) if (v.snapshots) await testBootHelper({ image: loadHelperImage(v.dir), accel, memoryMiB: 256, user: "nobody", softTimeoutSec: 300, hardTimeoutSec: 10, debug: true, onConsoleLine: () => {} }, { dir: v.snapshots, policy: "auto" });
for (let i = 0; i < runs; i++) {
  for (const [k, { dir, snapshots, label }] of variants.entries()) {
    const lines: { t: number; cpu: number; line: string }[] = [];
    const t0 = performance.now();
    let qemu: number | null = null;
    let lastCpu = 0;
    let rss = 0;
    const poll = setInterval(() => {
      qemu ??= qemuChild();
      if (qemu !== null) {
        lastCpu = Math.max(lastCpu, cpuSeconds(qemu) || 0);
        rss = Math.max(rss, hwmMiB(qemu));
      }
    }, 50);
    const o = await testBootHelper({
      image: loadHelperImage(dir),
      accel,
      memoryMiB: 256,
      user: "nobody",
      softTimeoutSec: 300,
      hardTimeoutSec: 10,
      debug: true,
      onConsoleLine: (line) => {
        qemu ??= qemuChild();
        const cpu = qemu === null ? NaN : cpuSeconds(qemu);
        if (cpu) lastCpu = Math.max(lastCpu, cpu);
        if (qemu !== null) rss = Math.max(rss, hwmMiB(qemu));
        lines.push({ t: (performance.now() - t0) / 1000, cpu, line });
      },
    }, snapshots ? { dir: snapshots, policy: "auto" } : undefined);
    if (snapshots && o.start.mode !== "resume") throw new Error(`${label}: expected a resume, got a ${o.start.mode} start`);
    if (!o.result?.ok) {
      console.error(lines.slice(-20).map((l) => l.line).join("\n"));
      throw new Error(`${dir}: test boot failed (${JSON.stringify(o.result)})`);
    }
    clearInterval(poll);
    const marks = phases(lines);
    const cpuMarks = cpuPhases(lines);
    rows[k]!.push({ total: o.durationMs / 1000, marks, cpu: lastCpu, cpuMarks, rss });
    console.log(`run ${i + 1}/${runs} ${label}: ${(o.durationMs / 1000).toFixed(2)} s, qemu CPU ${lastCpu.toFixed(2)} s, qemu peak RSS ${rss.toFixed(0)} MiB; ${[...marks].map(([n, t]) => `${n} ${t.toFixed(2)}/${cpuMarks.get(n)?.toFixed(2)}`).join(", ")}`);
  }
}
console.log(`\nempty helper boot (as doctor's), ${accel.toUpperCase()}, ${runs} runs interleaved, medians (wall: host clock; CPU: qemu process):`);
for (const [k, { label: dir }] of variants.entries()) {
  const rs = rows[k]!;
  const names = [...new Set(rs.flatMap((r) => [...r.marks.keys()]))];
  console.log(`${dir}: round trip ${median(rs.map((r) => r.total)).toFixed(2)} s wall, qemu CPU ${median(rs.map((r) => r.cpu)).toFixed(2)} s, qemu peak RSS ${median(rs.map((r) => r.rss)).toFixed(0)} MiB; phases (median s from the previous mark, wall / qemu CPU):`);
  let prev = "boot started";
  const d = (get: (r: (typeof rs)[number], n: string) => number, n: string, p: string) => median(rs.map((r) => get(r, n) - (p === "boot started" ? 0 : get(r, p))));
  const wall = (r: (typeof rs)[number], n: string) => (n === "end" ? r.total : r.marks.get(n) ?? NaN);
  const cpu = (r: (typeof rs)[number], n: string) => (n === "end" ? r.cpu : r.cpuMarks.get(n) ?? NaN);
  for (const n of [...names, "end"]) {
    console.log(`  ${`${prev} → ${n === "end" ? "qemu exited" : n}`.padEnd(60)} ${d(wall, n, prev).toFixed(2)} / ${d(cpu, n, prev).toFixed(2)}`);
    prev = n;
  }
}
rmSync(snapRoot, { recursive: true, force: true });
console.log(`load average: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);

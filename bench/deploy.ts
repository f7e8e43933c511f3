/**
 * One command, one image, one run: how fast is a deployment, and what does it
 * cost? Prints, for the same 2 GiB Debian bookworm diskdump onto a fresh 4 GiB
 * file disk (page cache dropped before each copy):
 *   - dd bs=1M oflag=direct conv=notrunc + sync  vs  our copy (ratio)
 *   - helper VM round trip (qemu start → SUCCESS → exit) and time per task
 *   - create end to end, against the original snf-image's 113.2 s measured on
 *     this kind of machine (shared/docs/baselines.md)
 *   - peak RSS of the host process, helper VM memory (configured and qemu's RSS)
 *
 *   bun bench/deploy.ts [--runs N]      (needs root and a built dist/)
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, OS_DIR, ganetiEnv, writeConfig } from "../test/lib/deploy.ts";
import { benchImage } from "./image.ts";

const ORIGINAL = { endToEnd: 113.2, helper: 109.4, copy: 3.2 };
const runs = Number(process.argv[process.argv.indexOf("--runs") + 1] || 3) || 3;
const MEMORY = 256;

const { img, work, images } = await benchImage("snf-bench-deploy-");
const disk = join(work, "disk0");

function freshDisk(): void {
  rmSync(disk, { force: true });
  Bun.spawnSync(["truncate", "-s", "4G", disk]);
}
function dropCaches(): void {
  Bun.spawnSync(["sync"]);
  Bun.write("/proc/sys/vm/drop_caches", "3\n");
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (s: number) => `${s.toFixed(2)} s`;

/** Peak RSS (VmHWM) of a pid and of its qemu descendant, sampled until exit. */
function sampler(pid: number) {
  let host = 0;
  let qemu = 0;
  const hwm = (p: number | string) => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  };
  const timer = setInterval(() => {
    host = Math.max(host, hwm(pid));
    const q = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" }).stdout.toString().trim().split("\n").filter(Boolean);
    for (const p of q) qemu = Math.max(qemu, hwm(p));
  }, 100);
  return { stop: () => (clearInterval(timer), { host, qemu }) };
}

const rows: { dd: number; copy: number; helper: number; total: number; host: number; qemu: number; tasks: Map<string, number> }[] = [];
for (let i = 0; i < runs; i++) {
  // dd baseline onto the same kind of target
  freshDisk();
  dropCaches();
  let t0 = performance.now();
  Bun.spawnSync(["dd", `if=${join(images, "bookworm")}`, `of=${disk}`, "bs=1M", "oflag=direct", "conv=notrunc", "status=none"]);
  Bun.spawnSync(["sync", disk]);
  const dd = (performance.now() - t0) / 1000;

  freshDisk();
  dropCaches();
  const cfg = writeConfig(work, { IMAGE_DIR: images, HELPER_DIR, HELPER_MEMORY: String(MEMORY), HELPER_SOFT_TIMEOUT: "600" });
  const env = ganetiEnv({ disks: [disk], instance: "bench1", osp: { img_id: "bookworm", img_format: "diskdump", img_passwd: "bench-pw", img_personality: JSON.stringify([{ path: "/root/x", contents: "eA==", mode: 384 }]) } }, cfg);
  t0 = performance.now();
  const p = Bun.spawn([join(OS_DIR, "create")], { cwd: OS_DIR, env, stdout: "pipe", stderr: "pipe" });
  const s = sampler(p.pid);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const total = (performance.now() - t0) / 1000;
  const mem = s.stop();
  const log = out + err;
  if (code !== 0) {
    console.error(log.split("\n").slice(-20).join("\n"));
    throw new Error(`create failed (exit ${code})`);
  }
  const m = /copy ([\d.]+) s, helper ([\d.]+) s under (\w+)/.exec(log);
  const tasks = new Map<string, number>();
  for (const t of log.matchAll(/task (\w+) done in ([\d.]+) s/g)) tasks.set(t[1]!, Number(t[2]));
  rows.push({ dd, copy: Number(m?.[1] ?? NaN), helper: Number(m?.[2] ?? NaN), total, host: mem.host, qemu: mem.qemu, tasks });
  console.log(`run ${i + 1}/${runs}: dd ${fmt(dd)}, create ${fmt(total)} (copy ${m?.[1]} s, helper ${m?.[2]} s under ${m?.[3]}), host peak RSS ${(mem.host / 2 ** 20).toFixed(0)} MiB, qemu RSS ${(mem.qemu / 2 ** 20).toFixed(0)} MiB`);
}
rmSync(work, { recursive: true, force: true });

const med = (k: "dd" | "copy" | "helper" | "total" | "host" | "qemu") => median(rows.map((r) => r[k]));
console.log(`\nsnf-image deploy benchmark — ${runs} runs, medians; image: bookworm diskdump 2 GiB (${img.recipeKey}) → 4 GiB file disk`);
console.log(`copy:       dd oflag=direct ${fmt(med("dd"))}   ours ${fmt(med("copy"))}   → ${(med("dd") / med("copy")).toFixed(2)}× dd (target ≥ 1.0×)`);
console.log(`helper VM:  round trip ${fmt(med("helper"))}   original ${fmt(ORIGINAL.helper)} → ${(ORIGINAL.helper / med("helper")).toFixed(1)}× faster (target ≤ 10 s under TCG)`);
console.log(`create:     end to end ${fmt(med("total"))}   original ${fmt(ORIGINAL.endToEnd)} → ${(ORIGINAL.endToEnd / med("total")).toFixed(1)}× faster (target ≥ 10×)`);
console.log(`memory:     host peak RSS ${(med("host") / 2 ** 20).toFixed(0)} MiB (target ≤ 100); helper VM ${MEMORY} MiB guest RAM, qemu peak RSS ${(med("qemu") / 2 ** 20).toFixed(0)} MiB`);
console.log("per task (median s):");
const names = [...new Set(rows.flatMap((r) => [...r.tasks.keys()]))];
for (const n of names) console.log(`  ${n.padEnd(28)} ${median(rows.map((r) => r.tasks.get(n) ?? 0)).toFixed(2)}`);
console.log(`load average during the run: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);

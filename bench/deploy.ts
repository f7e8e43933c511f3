/**
 * One command, one image, one run: how fast is a deployment, and what does it
 * cost? Prints, for the same 2 GiB Debian bookworm diskdump onto a fresh 4 GiB
 * file disk (page cache dropped before each copy):
 *   - dd bs=1M oflag=direct conv=notrunc + sync  vs  our copy (ratio)
 *   - helper VM round trip (qemu start → SUCCESS → exit) and time per task,
 *     resumed from its saved state (HELPER_RESUME=auto, after one warm-up create
 *     that saves it) and, interleaved in the same runs, cold (HELPER_RESUME=off)
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

type Row = { dd: number; copy: number; helper: number; total: number; host: number; qemu: number; attach: number; mode: string; tasks: Map<string, number> };

async function create(resume: "auto" | "off"): Promise<Row> {
  freshDisk();
  dropCaches();
  const cfg = writeConfig(work, { IMAGE_DIR: images, HELPER_DIR, HELPER_MEMORY: String(MEMORY), HELPER_SOFT_TIMEOUT: "600", HELPER_RESUME: resume });
  const env = ganetiEnv({ disks: [disk], instance: "bench1", osp: { img_id: "bookworm", img_format: "diskdump", img_passwd: "bench-pw", img_personality: JSON.stringify([{ path: "/root/x", contents: "eA==", mode: 384 }]) } }, cfg);
  const t0 = performance.now();
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
  const a = /helper VM (resumed from its saved state|booted); disks attached ([\d.]+) s/.exec(log);
  const tasks = new Map<string, number>();
  for (const t of log.matchAll(/task (\w+) done in ([\d.]+) s/g)) tasks.set(t[1]!, Number(t[2]));
  const mode = a?.[1]?.startsWith("resumed") ? "resume" : "cold";
  return { dd: NaN, copy: Number(m?.[1] ?? NaN), helper: Number(m?.[2] ?? NaN), total, host: mem.host, qemu: mem.qemu, attach: Number(a?.[2] ?? NaN), mode, tasks };
}

// warm-up: the first create with HELPER_RESUME=auto saves the helper VM's state (if none is saved yet)
const warm = await create("auto");
console.log(`warm-up: create ${fmt(warm.total)} (${warm.mode}${warm.mode === "cold" ? ", state saved" : ""})`);

const rows: Row[] = [];
const cold: Row[] = [];
for (let i = 0; i < runs; i++) {
  // dd baseline onto the same kind of target
  freshDisk();
  dropCaches();
  const t0 = performance.now();
  Bun.spawnSync(["dd", `if=${join(images, "bookworm")}`, `of=${disk}`, "bs=1M", "oflag=direct", "conv=notrunc", "status=none"]);
  Bun.spawnSync(["sync", disk]);
  const dd = (performance.now() - t0) / 1000;
  const r = { ...(await create("auto")), dd };
  rows.push(r);
  const c = await create("off");
  cold.push(c);
  const line = (x: Row) => `create ${fmt(x.total)} (copy ${fmt(x.copy)}, helper ${fmt(x.helper)}, disks attached ${fmt(x.attach)} after qemu start)`;
  console.log(`run ${i + 1}/${runs}: dd ${fmt(dd)}; ${r.mode}: ${line(r)}, host peak RSS ${(r.host / 2 ** 20).toFixed(0)} MiB, qemu RSS ${(r.qemu / 2 ** 20).toFixed(0)} MiB; cold (HELPER_RESUME=off): ${line(c)}`);
}
rmSync(work, { recursive: true, force: true });

type Key = "dd" | "copy" | "helper" | "total" | "host" | "qemu" | "attach";
const med = (k: Key, xs: Row[] = rows) => median(xs.map((r) => r[k]));
console.log(`\nsnf-image deploy benchmark — ${runs} runs, medians; image: bookworm diskdump 2 GiB (${img.recipeKey}) → 4 GiB file disk`);
console.log(`copy:       dd oflag=direct ${fmt(med("dd"))}   ours ${fmt(med("copy"))}   → ${(med("dd") / med("copy")).toFixed(2)}× dd (target ≥ 1.0×)`);
console.log(`helper VM (${rows.map((r) => r.mode).join("/")}):  round trip ${fmt(med("helper"))}, disks attached after ${fmt(med("attach"))}   original ${fmt(ORIGINAL.helper)} → ${(ORIGINAL.helper / med("helper")).toFixed(1)}× faster (target ≤ 3 s under TCG)`);
console.log(`create:     end to end ${fmt(med("total"))}   original ${fmt(ORIGINAL.endToEnd)} → ${(ORIGINAL.endToEnd / med("total")).toFixed(1)}× faster (target ≥ 25×)`);
console.log(`cold boot (HELPER_RESUME=off, same runs): helper ${fmt(med("helper", cold))}, disks attached after ${fmt(med("attach", cold))}, create ${fmt(med("total", cold))} → ${(ORIGINAL.endToEnd / med("total", cold)).toFixed(1)}× the original`);
console.log(`memory:     host peak RSS ${(med("host") / 2 ** 20).toFixed(0)} MiB (target ≤ 100); helper VM ${MEMORY} MiB guest RAM, qemu peak RSS ${(med("qemu") / 2 ** 20).toFixed(0)} MiB (cold: ${(med("qemu", cold) / 2 ** 20).toFixed(0)} MiB)`);
console.log("per task (median s, resumed runs):");
const names = [...new Set(rows.flatMap((r) => [...r.tasks.keys()]))];
for (const n of names) console.log(`  ${n.padEnd(28)} ${median(rows.map((r) => r.tasks.get(n) ?? 0)).toFixed(2)}`);
console.log(`load average during the run: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);

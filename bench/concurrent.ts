/**
 * Many creates at once: N `create`s of the 2 GiB bookworm bench image (as
 * bench/deploy.ts) started together, against one create alone in the same
 * run. Every disk is checked afterwards (read-only loop mount): its own
 * hostname and its own root password. Prints the wall-time ratio
 * (N at once / one alone) and the peak memory: the sum, sampled every 100 ms,
 * of the RSS of every create process and of every qemu they started.
 *
 *   bun bench/concurrent.ts [--n N] [--runs R]     (needs root and a built dist/)
 */
import { readFileSync, rmSync } from "node:fs";
import { descendants } from "./proc.ts";
import { join } from "node:path";
import { HELPER_DIR, OS_DIR, ganetiEnv, writeConfig } from "../test/lib/deploy.ts";
import { benchImage } from "./image.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../test/lib/inspect.ts";

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) || dflt : dflt;
};
const N = opt("--n", 4);
const runs = opt("--runs", 1);
const MEMORY = 256;

const { work, images } = await benchImage("snf-bench-concurrent-");
const cfg = writeConfig(work, { IMAGE_DIR: images, HELPER_DIR, HELPER_MEMORY: String(MEMORY), HELPER_SOFT_TIMEOUT: "900" });

/** RSS of a pid in bytes (0 if gone). */
function rss(pid: number | string): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
interface One {
  name: string;
  disk: string;
  password: string;
}

/** Start `n` creates together; returns wall time and peak summed RSS (host processes, qemu). */
async function batch(n: number, tag: string): Promise<{ wall: number; host: number; qemu: number; sum: number; helper: number[]; copy: number[]; resumed: number }> {
  const ones: One[] = [];
  for (let i = 0; i < n; i++) {
    const disk = join(work, `disk-${tag}-${i}`);
    rmSync(disk, { force: true });
    Bun.spawnSync(["truncate", "-s", "4G", disk]);
    ones.push({ name: `bench-${tag}-${i}.example.org`, disk, password: `pw-${tag}-${i}-${crypto.randomUUID().slice(0, 8)}` });
  }
  let host = 0;
  let qemu = 0;
  let sum = 0;
  const t0 = performance.now();
  const procs = ones.map((o) =>
    Bun.spawn([join(OS_DIR, "create")], {
      cwd: OS_DIR,
      env: ganetiEnv({ disks: [o.disk], instance: o.name, osp: { img_id: "bookworm", img_format: "diskdump", img_passwd: o.password } }, cfg),
      stdout: "pipe",
      stderr: "pipe",
    }),
  );
  const timer = setInterval(() => {
    let h = 0;
    let q = 0;
    for (const { pid, comm } of descendants(procs.map((p) => p.pid))) {
      if (comm.startsWith("qemu-system")) q += rss(pid);
      else h += rss(pid);
    }
    host = Math.max(host, h);
    qemu = Math.max(qemu, q);
    sum = Math.max(sum, h + q); // the peak of the sum, not the sum of the peaks
  }, 100);
  const results = await Promise.all(procs.map(async (p) => {
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { log: out + err, code };
  }));
  const wall = (performance.now() - t0) / 1000;
  clearInterval(timer);
  const helper: number[] = [];
  const copy = results.map((r) => Number(/\(copy ([\d.]+) s, helper/.exec(r.log)?.[1] ?? NaN));
  const resumed = results.filter((r) => /helper VM resumed from its saved state/.test(r.log)).length;
  results.forEach((r, i) => {
    if (r.code !== 0) {
      console.error(r.log.split("\n").slice(-20).join("\n"));
      throw new Error(`${ones[i]!.name}: create failed (exit ${r.code})`);
    }
    helper.push(Number(/helper ([\d.]+) s under/.exec(r.log)?.[1] ?? NaN));
  });
  for (const o of ones) {
    const m = mountDisk(o.disk, 1);
    try {
      const hn = m.read("/etc/hostname").trim();
      if (hn !== o.name) throw new Error(`${o.disk}: hostname ${hn}, expected ${o.name}`);
      const hash = shadowHash(m.read("/etc/shadow"), "root") ?? "";
      if (!verifyCrypt(o.password, hash)) throw new Error(`${o.disk}: root password is not this create's own`);
    } finally {
      m.close();
    }
    rmSync(o.disk, { force: true });
  }
  return { wall, host, qemu, sum, helper, copy, resumed };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const single: number[] = [];
const many: number[] = [];
try {
  // warm-up: with HELPER_RESUME=auto (the default) the first create saves the helper VM, the rest resume it
  const warm = await batch(1, "warm");
  console.log(`warm-up: 1 create ${warm.wall.toFixed(2)} s (${warm.resumed ? "resumed" : "cold boot, state saved"})`);
  for (let r = 0; r < runs; r++) {
    const one = await batch(1, `r${r}-single`);
    single.push(one.wall);
    console.log(`run ${r + 1}/${runs}: 1 create ${one.wall.toFixed(2)} s (copy ${one.copy[0]} s, helper ${one.helper[0]} s), peak RSS host ${MiB(one.host)} + qemu ${MiB(one.qemu)}`);
    const all = await batch(N, `r${r}-many`);
    many.push(all.wall);
    console.log(
      `run ${r + 1}/${runs}: ${N} creates at once ${all.wall.toFixed(2)} s (copies ${all.copy.map((h) => h.toFixed(1)).join(", ")} s, helpers ${all.helper.map((h) => h.toFixed(1)).join(", ")} s, ${all.resumed}/${N} resumed), all ${N} disks verified; ` +
        `peak RSS host ${MiB(all.host)} + qemu ${MiB(all.qemu)}, peak of the sum ${MiB(all.sum)}`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const ratio = median(many) / median(single);
console.log(`\n${N} creates at once vs 1 (bookworm diskdump 2 GiB → 4 GiB file disks, ${runs} run(s), medians): ${median(many).toFixed(2)} s vs ${median(single).toFixed(2)} s → ${ratio.toFixed(2)}× (target ≤ 2.5×)`);
console.log(`load average: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);

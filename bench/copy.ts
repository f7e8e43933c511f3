/**
 * Copy-phase benchmark (root): dd bs=1M oflag=direct conv=notrunc + sync
 * against writeImage, each onto a fresh sparse 4 GiB file behind a loop
 * device, page cache dropped before each run.
 *
 *   bun bench/copy.ts [--sparse IMG] [--dense IMG] [--runs N] [--dir DIR]
 *
 * Without --sparse/--dense it builds (once, cached in DIR) a 2 GiB image with
 * ~11 % non-zero 4 KiB blocks in clustered runs and a 512 MiB random image.
 * Our copy runs in a child process so that its peak RSS is its own; its time
 * includes that process's start. Prints dd time, ours, ratio and our peak RSS
 * for both images: medians of --runs (default 3) runs, dd and ours
 * interleaved, and the ratio of the best runs (the machine may be busy).
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const { values } = parseArgs({
  options: {
    sparse: { type: "string" },
    dense: { type: "string" },
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: "/var/tmp/snf-bench" },
    verify: { type: "boolean", default: true },
  },
});
const dir = values.dir!;
fs.mkdirSync(dir, { recursive: true });

async function run(argv: string[], stdin?: "inherit"): Promise<string> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: stdin ?? "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`);
  return out.trim();
}

function buildSparse(file: string) {
  const size = 2 * GiB;
  const fd = fs.openSync(file, "w");
  fs.ftruncateSync(fd, size);
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const blocks = size / 4096;
  const buf = new Uint8Array(64 * 4096);
  let nonzero = 0;
  for (let b = 0; b < blocks; ) {
    // Clustered: a data run of 1–64 blocks, then a zero gap (mean ~8× longer).
    const run = 1 + Math.floor(rnd() * 64);
    const n = Math.min(run, blocks - b);
    crypto.getRandomValues(buf.subarray(0, Math.min(65536, n * 4096)));
    for (let o = 65536; o < n * 4096; o += 65536) buf.copyWithin(o, 0, Math.min(65536, n * 4096 - o));
    fs.writeSync(fd, buf, 0, n * 4096, b * 4096);
    nonzero += n;
    b += n + Math.floor(rnd() * run * 16);
  }
  fs.closeSync(fd);
  console.log(`built ${file}: 2 GiB, ${((100 * nonzero) / blocks).toFixed(1)} % non-zero 4 KiB blocks`);
}

async function image(kind: "sparse" | "dense"): Promise<string> {
  const given = values[kind];
  if (given) return given;
  const f = path.join(dir, `${kind}.img`);
  if (!fs.existsSync(f)) {
    if (kind === "sparse") buildSparse(f);
    else {
      await run(["dd", "if=/dev/urandom", `of=${f}`, "bs=1M", "count=512", "status=none"]);
      console.log(`built ${f}: 512 MiB random`);
    }
  }
  return f;
}

async function freshLoop(): Promise<{ dev: string; file: string; done: () => Promise<void> }> {
  const file = path.join(dir, "target.raw");
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, "");
  fs.truncateSync(file, 4 * GiB);
  const dev = await run(["losetup", "-f", "--show", file]);
  return {
    dev,
    file,
    done: async () => {
      await run(["losetup", "-d", dev]);
      fs.rmSync(file, { force: true });
    },
  };
}

async function dropCaches() {
  await run(["sync"]);
  fs.writeFileSync("/proc/sys/vm/drop_caches", "3\n");
}

async function timeDd(img: string): Promise<number> {
  const t = await freshLoop();
  try {
    await dropCaches();
    const t0 = performance.now();
    await run(["dd", `if=${img}`, `of=${t.dev}`, "bs=1M", "oflag=direct", "conv=notrunc", "status=none"]);
    await run(["sync"]);
    return (performance.now() - t0) / 1000;
  } finally {
    await t.done();
  }
}

/**
 * Our copy in a child process. `s` is wall time including the child's start-up (Bun, module
 * loading); `copyS` is the copy as create pays for it: open source + writeImage (which ends with
 * fdatasync) + the same final sync dd gets, in a process that is already running.
 */
async function timeOurs(img: string, verify: boolean): Promise<{ s: number; copyS: number; rssMiB: number; zeroPct: number }> {
  const t = await freshLoop();
  try {
    await dropCaches();
    const t0 = performance.now();
    const out = await run(["bun", path.join(import.meta.dir, "child-copy.ts"), img, t.dev]);
    const t1 = performance.now();
    await run(["sync"]);
    const syncS = (performance.now() - t1) / 1000;
    const s = (performance.now() - t0) / 1000;
    const r = JSON.parse(out) as { bytes: number; zeroBytes: number; maxRssKiB: number; copyMs: number };
    if (verify) await run(["cmp", "-n", String(fs.statSync(img).size), img, t.dev]);
    return { s, copyS: r.copyMs / 1000 + syncS, rssMiB: r.maxRssKiB / 1024, zeroPct: (100 * r.zeroBytes) / r.bytes };
  } finally {
    await t.done();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const runs = Number(values.runs);
for (const kind of ["sparse", "dense"] as const) {
  const img = await image(kind);
  const dd: number[] = [];
  const ours: number[] = [];
  const copy: number[] = [];
  let rss = 0;
  let zeroPct = 0;
  for (let i = 0; i < runs; i++) {
    dd.push(await timeDd(img));
    const o = await timeOurs(img, values.verify! && i === 0);
    ours.push(o.s);
    copy.push(o.copyS);
    rss = Math.max(rss, o.rssMiB);
    zeroPct = o.zeroPct;
  }
  const d = median(dd);
  const w = median(ours);
  const c = median(copy);
  const best = Math.min(...dd) / Math.min(...copy);
  console.log(
    `${kind.padEnd(6)} ${(fs.statSync(img).size / MiB).toFixed(0)} MiB: dd+sync ${d.toFixed(2)} s, our copy ${c.toFixed(2)} s → ${(d / c).toFixed(2)}× dd ` +
      `(best runs ${best.toFixed(2)}×; with process start-up ${w.toFixed(2)} s → ${(d / w).toFixed(2)}×), zeroed ${zeroPct.toFixed(1)} %, our peak RSS ${rss.toFixed(0)} MiB` +
      (runs > 1 ? ` [median of ${runs}; dd ${dd.map((x) => x.toFixed(2)).join("/")}, ours ${ours.map((x) => x.toFixed(2)).join("/")}]` : ""),
  );
}

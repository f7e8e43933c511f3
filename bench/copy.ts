/**
 * Copy-phase benchmark (root): dd, `qemu-img convert -n -f raw -O raw` and
 * our copy (local source → openImage → writeImage, as create runs it, in a
 * child process so that its peak RSS is its own), interleaved in the same
 * run, each onto a fresh sparse 4 GiB file behind a loop device, page cache
 * dropped before and `sync` after each copy.
 *
 *   bun bench/copy.ts [--runs N] [--dir DIR] [--image IMG | --synthetic] [--dense IMG] [--no-verify] [--base CHECKOUT]
 *
 * Images:
 * - the 2 GiB Debian bookworm diskdump (test/lib/images.ts, cached; ~11 %
 *   data), or --image IMG, or with --synthetic a 2 GiB image built here with
 *   ~11 % non-zero 4 KiB blocks in clustered runs — stored twice in DIR:
 *   SPARSE (`cp --sparse=always`: its zeros are holes, which qemu-img and we
 *   find with lseek SEEK_DATA/SEEK_HOLE and never read) and NON-SPARSE (every
 *   block allocated: everything is read);
 * - a 512 MiB random image (dense).
 *
 * Before the timed runs, one check per image: qemu-img and ours onto targets
 * filled with the same old random data, then cmp of the two targets (and of
 * ours against the image): byte-identical over old data.
 *
 * Prints per image the medians of --runs (default 3) runs (each run starts
 * with the next tool in turn): wall time from the
 * process start to the end of the final sync for each tool, ours also
 * in-process (as create pays for it: no Bun start-up), the ratios vs dd and
 * vs qemu-img (> 1: we are faster), and each tool's peak RSS. With --base,
 * the copy of another checkout (its bench/child-copy.ts, e.g. main in a
 * worktree) runs interleaved as a fourth tool: before/after in one run.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const { values } = parseArgs({
  options: {
    image: { type: "string" },
    synthetic: { type: "boolean", default: false },
    dense: { type: "string" },
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: "/var/tmp/snf-bench" },
    "no-verify": { type: "boolean", default: false },
    base: { type: "string" },
  },
});
const dir = values.dir!;
fs.mkdirSync(dir, { recursive: true });

/**
 * GNU time's %M is the tool's own peak RSS; Bun's resourceUsage() of a child
 * also counts what the child had before its exec (a copy of this process).
 */
const TIME = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;
const rssFile = path.join(dir, "rss.txt");

async function run(argv: string[], measure = false): Promise<{ out: string; rssMiB: number }> {
  const cmd = measure && TIME ? [TIME, "-f", "%M", "-o", rssFile, ...argv] : argv;
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`);
  let rssMiB = (p.resourceUsage()?.maxRSS ?? 0) / MiB; // bytes here
  if (measure && TIME) rssMiB = Number(fs.readFileSync(rssFile, "utf8").trim().split("\n").at(-1)) / 1024;
  return { out: out.trim(), rssMiB };
}

function buildSynthetic(file: string) {
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

const allocated = (f: string) => fs.statSync(f).blocks * 512;

/** The mostly-zero image, stored sparse and non-sparse in DIR (made once, cached). */
async function mostlyZero(): Promise<{ label: string; sparse: string; full: string }> {
  let src: string;
  let label: string;
  if (values.image) {
    src = values.image;
    label = path.basename(src);
  } else if (values.synthetic) {
    src = path.join(dir, "sparse.img");
    if (!fs.existsSync(src)) buildSynthetic(src);
    label = "synthetic";
  } else {
    const { debianImage } = await import("../test/lib/images.ts");
    const d = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", sizeMiB: 2048 });
    src = d.path;
    label = d.recipeKey;
  }
  const key = label.replace(/[^\w.-]+/g, "_");
  const sparse = path.join(dir, `${key}.sparse.img`);
  const full = path.join(dir, `${key}.full.img`);
  const newer = (f: string) => fs.existsSync(f) && fs.statSync(f).mtimeMs >= fs.statSync(src).mtimeMs;
  if (!newer(sparse)) await run(["cp", "--sparse=always", src, sparse]);
  if (!newer(full) || allocated(full) < fs.statSync(full).size) await run(["cp", "--sparse=never", src, full]);
  const size = fs.statSync(src).size;
  if (allocated(full) < size) throw new Error(`${full}: ${allocated(full)} of ${size} bytes allocated, wanted all (filesystem without cp --sparse=never?)`);
  if (allocated(sparse) >= size) throw new Error(`${sparse}: every block allocated, wanted holes`);
  return { label, sparse, full };
}

async function dense(): Promise<string> {
  if (values.dense) return values.dense;
  const f = path.join(dir, "dense.img");
  if (!fs.existsSync(f)) {
    await run(["dd", "if=/dev/urandom", `of=${f}`, "bs=1M", "count=512", "status=none"]);
    console.log(`built ${f}: 512 MiB random`);
  }
  return f;
}

interface Loop {
  dev: string;
  file: string;
  done: () => Promise<void>;
}

/** The old data of the check targets: the same in both, so that the bytes past the image compare too. */
const OLD_BLOCK = new Uint8Array(16 * MiB);
for (let o = 0; o < OLD_BLOCK.length; o += 65536) crypto.getRandomValues(OLD_BLOCK.subarray(o, o + 65536));

/** A loop device over DIR/name: a fresh sparse 4 GiB file, or `old` bytes of old random data. */
async function loop(name: string, old = 0): Promise<Loop> {
  const file = path.join(dir, name);
  fs.rmSync(file, { force: true });
  if (old) {
    const fd = fs.openSync(file, "w");
    const block = OLD_BLOCK;
    const tag = new DataView(block.buffer);
    for (let pos = 0, i = 0; pos < old; pos += block.length, i++) {
      tag.setUint32(0, i); // no two 16 MiB blocks alike
      fs.writeSync(fd, block, 0, Math.min(block.length, old - pos), pos);
    }
    fs.closeSync(fd);
  } else {
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 4 * GiB);
  }
  const dev = (await run(["losetup", "-f", "--show", file])).out;
  let detached = false;
  return {
    dev,
    file,
    done: async () => {
      if (!detached) await run(["losetup", "-d", dev]);
      detached = true;
    },
  };
}

async function dropCaches() {
  await run(["sync"]);
  fs.writeFileSync("/proc/sys/vm/drop_caches", "3\n");
}

type Tool = "dd" | "qemu-img" | "ours" | "base";
const TOOLS: Tool[] = values.base ? ["dd", "qemu-img", "ours", "base"] : ["dd", "qemu-img", "ours"];
const childCopy = (tool: Tool) => path.join(tool === "base" ? path.join(path.resolve(values.base!), "bench") : import.meta.dir, "child-copy.ts");

function argv(tool: Tool, img: string, dev: string): string[] {
  switch (tool) {
    case "dd":
      return ["dd", `if=${img}`, `of=${dev}`, "bs=1M", "oflag=direct", "conv=notrunc", "status=none"];
    case "qemu-img":
      return ["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img, dev];
    case "ours":
    case "base":
      return ["bun", childCopy(tool), img, dev];
  }
}

interface Timing {
  /** Process start to the end of the final sync. */
  s: number;
  /** Ours only: open + writeImage in the already running process, plus the same final sync. */
  inProcS: number;
  rssMiB: number;
  zeroPct: number;
}

/** One copy onto a fresh loop device (cache dropped first, sync after). */
async function timed(tool: Tool, img: string): Promise<Timing> {
  const t = await loop("target.raw");
  try {
    await dropCaches();
    const t0 = performance.now();
    const r = await run(argv(tool, img, t.dev), true);
    const t1 = performance.now();
    await run(["sync"]);
    const syncS = (performance.now() - t1) / 1000;
    const s = (performance.now() - t0) / 1000;
    if (tool !== "ours" && tool !== "base") return { s, inProcS: s, rssMiB: r.rssMiB, zeroPct: 0 };
    const o = JSON.parse(r.out) as { bytes: number; zeroBytes: number; copyMs: number };
    return { s, inProcS: o.copyMs / 1000 + syncS, rssMiB: r.rssMiB, zeroPct: (100 * o.zeroBytes) / o.bytes };
  } finally {
    await t.done();
    fs.rmSync(t.file, { force: true });
  }
}

/** qemu-img and ours onto the same old random data: both targets must be byte-identical, ours equal to the image. */
async function check(img: string): Promise<void> {
  const size = fs.statSync(img).size;
  const old = size + 16 * MiB;
  const targets: string[] = [];
  try {
    for (const tool of ["qemu-img", "ours"] as const) {
      const t = await loop(`check-${tool}.raw`, old);
      targets.push(t.file);
      try {
        await run(argv(tool, img, t.dev));
        await run(["sync"]);
      } finally {
        await t.done();
      }
    }
    await run(["cmp", targets[0]!, targets[1]!]);
    await run(["cmp", "-n", String(size), img, targets[1]!]);
  } finally {
    for (const f of targets) fs.rmSync(f, { force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const f2 = (x: number) => x.toFixed(2);
const runs = Number(values.runs);
const mz = await mostlyZero();
const images: [string, string][] = [
  [`sparse ${mz.label}`, mz.sparse],
  [`non-sparse ${mz.label}`, mz.full],
  ["dense random", await dense()],
];
console.log(`load average at the start: ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
for (const [label, img] of images) {
  if (!values["no-verify"]) await check(img);
  const t: Record<Tool, Timing[]> = { dd: [], "qemu-img": [], ours: [], base: [] };
  // Each run starts with the next tool, so that none always runs after the same other one.
  for (let i = 0; i < runs; i++) for (const tool of [...TOOLS.slice(i % TOOLS.length), ...TOOLS.slice(0, i % TOOLS.length)]) t[tool].push(await timed(tool, img));
  const m = (tool: Tool, k: "s" | "inProcS" = "s") => median(t[tool].map((x) => x[k]));
  const rss = (tool: Tool) => Math.max(...t[tool].map((x) => x.rssMiB)).toFixed(0);
  const [dd, qemu] = [m("dd"), m("qemu-img")];
  const size = fs.statSync(img).size;
  const lines = [`${label} (${(size / MiB).toFixed(0)} MiB, ${(allocated(img) / MiB).toFixed(0)} MiB allocated)${values["no-verify"] ? "" : ", ours = qemu-img's over old data"}:`];
  lines.push(`  dd ${f2(dd)} s, qemu-img ${f2(qemu)} s; peak RSS dd ${rss("dd")} MiB, qemu-img ${rss("qemu-img")} MiB`);
  for (const tool of TOOLS.filter((x) => x === "ours" || x === "base")) {
    const [w, inproc] = [m(tool), m(tool, "inProcS")];
    const name = tool === "base" ? `base (${values.base})` : "ours";
    lines.push(
      `  ${name} ${f2(w)} s (in-process ${f2(inproc)} s), zeroed ${t[tool][0]!.zeroPct.toFixed(1)} %, peak RSS ${rss(tool)} MiB: ` +
        `${f2(dd / w)}× dd (in-process ${f2(dd / inproc)}×), ${f2(qemu / w)}× qemu-img (in-process ${f2(qemu / inproc)}×; best runs ${f2(Math.min(...t["qemu-img"].map((x) => x.s)) / Math.min(...t[tool].map((x) => x.s)))}×)`,
    );
  }
  if (runs > 1) lines.push(`  [median of ${runs}; ${TOOLS.map((k) => `${k} ${t[k].map((x) => f2(x.s)).join("/")}`).join(", ")}]`);
  console.log(lines.join("\n"));
}
console.log(`load average at the end: ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
fs.rmSync(rssFile, { force: true });

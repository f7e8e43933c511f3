/**
 * qcow2 copy benchmark (root): our conversion (local source → openImage →
 * writeImage, as create runs it) against `qemu-img convert -n -O raw` onto the
 * same kind of target in the same run: a fresh sparse 4 GiB file behind a loop
 * device, page cache dropped before each copy, `sync` after each.
 *
 *   bun bench/qcow2.ts [--runs N] [--dir DIR] [--no-verify]
 *
 * Images: qemu-img's qcow2 files (plain v3, compressed zlib, compressed zstd)
 * of the 2 GiB Debian bookworm test image (test/lib/images.ts, cached).
 * Prints per image: medians of both, the ratio (qemu-img time / ours, > 1 =
 * we are faster), and both processes' peak RSS. The first run checks our disk
 * against qemu-img's with cmp.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    dir: { type: "string", default: "/var/tmp/snf-bench" },
    "no-verify": { type: "boolean", default: false },
  },
});
const dir = values.dir!;
fs.mkdirSync(dir, { recursive: true });

async function run(argv: string[]): Promise<{ out: string; rssMiB: number }> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`);
  return { out: out.trim(), rssMiB: (p.resourceUsage()?.maxRSS ?? 0) / MiB }; // bytes here
}

async function freshLoop(name: string): Promise<{ dev: string; file: string; done: () => Promise<void> }> {
  const file = path.join(dir, name);
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, "");
  fs.truncateSync(file, 4 * GiB);
  const dev = (await run(["losetup", "-f", "--show", file])).out;
  return { dev, file, done: async () => void (await run(["losetup", "-d", dev])) };
}

async function dropCaches() {
  await run(["sync"]);
  fs.writeFileSync("/proc/sys/vm/drop_caches", "3\n");
}

/** One copy onto a fresh loop device; returns seconds incl. the final sync, and peak RSS. */
async function timed(argv: (dev: string) => string[], keep: string | null): Promise<{ s: number; rssMiB: number }> {
  const t = await freshLoop(keep ?? "target.raw");
  try {
    await dropCaches();
    const t0 = performance.now();
    const r = await run(argv(t.dev));
    await run(["sync"]);
    return { s: (performance.now() - t0) / 1000, rssMiB: r.rssMiB };
  } finally {
    await t.done();
    if (!keep) fs.rmSync(t.file, { force: true });
  }
}

const { debianImage } = await import("../test/lib/images.ts");
const debian = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", sizeMiB: 2048 });
const kinds: [string, string[]][] = [
  ["plain v3", []],
  ["compressed zlib", ["-c"]],
  ["compressed zstd", ["-c", "-o", "compression_type=zstd"]],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const runs = Number(values.runs);
for (const [label, opts] of kinds) {
  const img = path.join(dir, `${debian.recipeKey}-${label.replace(/ /g, "-")}.qcow2`);
  if (!fs.existsSync(img)) await run(["qemu-img", "convert", "-O", "qcow2", ...opts, debian.path, img]);
  const qemu: number[] = [];
  const ours: number[] = [];
  let qemuRss = 0;
  let ourRss = 0;
  for (let i = 0; i < runs; i++) {
    const verify = i === 0 && !values["no-verify"];
    const q = await timed((dev) => ["qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", img, dev], verify ? "qemu.raw" : null);
    const o = await timed((dev) => ["bun", path.join(import.meta.dir, "child-copy.ts"), img, dev, "qcow2"], verify ? "ours.raw" : null);
    if (verify) {
      await run(["cmp", "-n", String(2 * GiB), path.join(dir, "qemu.raw"), path.join(dir, "ours.raw")]);
      for (const f of ["qemu.raw", "ours.raw"]) fs.rmSync(path.join(dir, f), { force: true });
    }
    qemu.push(q.s);
    ours.push(o.s);
    qemuRss = Math.max(qemuRss, q.rssMiB);
    ourRss = Math.max(ourRss, o.rssMiB);
  }
  const q = median(qemu);
  const o = median(ours);
  console.log(
    `${label.padEnd(16)} ${(fs.statSync(img).size / MiB).toFixed(0)} MiB file: qemu-img convert -n + sync ${q.toFixed(2)} s, ours ${o.toFixed(2)} s → ` +
      `${(q / o).toFixed(2)}× qemu-img (best runs ${(Math.min(...qemu) / Math.min(...ours)).toFixed(2)}×); peak RSS qemu-img ${qemuRss.toFixed(0)} MiB, ours ${ourRss.toFixed(0)} MiB` +
      (runs > 1 ? ` [median of ${runs}; qemu-img ${qemu.map((x) => x.toFixed(2)).join("/")}, ours ${ours.map((x) => x.toFixed(2)).join("/")}]` : ""),
  );
}

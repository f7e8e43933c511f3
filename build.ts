#!/usr/bin/env bun
/**
 * Build everything under dist/:
 *   dist/snf-image            host executable (bun build --compile)
 *   dist/snf-image-helper     guest executable (bun build --compile)
 *   dist/os/snf-image/        the Ganeti OS definition (API files + wrappers)
 *   dist/helper/              the helper VM image   (skip with --no-helper-image)
 *
 * Options: --os-bin PATH   the host executable the OS wrappers call
 *                          (default: the dist/snf-image next to them, via a symlink)
 *          --no-helper-image
 */
import { chmodSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { PARAMETER_HELP } from "./src/params.ts";
import { OS_PARAMETERS } from "./src/config.ts";

const root = import.meta.dir;
const dist = join(root, "dist");
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const opt = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};

async function compile(entry: string, out: string, extra: string[] = []): Promise<void> {
  const t0 = performance.now();
  const p = Bun.spawnSync({
    cmd: [process.execPath, "build", "--compile", "--minify-syntax", "--sourcemap=none", ...extra, entry, "--outfile", out],
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (p.exitCode !== 0) {
    process.stderr.write(p.stderr);
    throw new Error(`bun build --compile ${entry} failed`);
  }
  console.log(`built ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** The Ganeti OS definition directory. */
export function writeOsDefinition(dir: string, hostBin: string | null): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "ganeti_api_version"), "20\n");
  writeFileSync(join(dir, "variants.list"), "default\n");
  writeFileSync(join(dir, "parameters.list"), OS_PARAMETERS.map((p) => `${p}\t${PARAMETER_HELP[p]}\n`).join(""));
  const bin = hostBin ?? '"${0%/*}/snf-image"';
  if (!hostBin) symlinkSync("../../snf-image", join(dir, "snf-image"));
  for (const script of ["create", "import", "export", "rename", "verify"]) {
    const f = join(dir, script);
    writeFileSync(f, `#!/bin/sh\n# Ganeti OS API ${script}: hands over to the snf-image executable.\nexec ${bin} os ${script} "$@"\n`);
    chmodSync(f, 0o755);
  }
}

if (import.meta.main) {
  mkdirSync(dist, { recursive: true });
  await compile("src/cli.ts", join(dist, "snf-image"));
  // --bytecode: the helper starts from precompiled JSC bytecode instead of parsing its bundle;
  // measured under TCG: Bun start-up 1.51 → 1.14 CPU-s (docs/benchmarks.md)
  await compile("helper/main.ts", join(dist, "snf-image-helper"), ["--bytecode"]);
  writeOsDefinition(join(dist, "os", "snf-image"), opt("--os-bin") ?? null);
  console.log(`wrote ${join(dist, "os", "snf-image")}`);
  if (!flag("--no-helper-image")) {
    const p = Bun.spawnSync({
      cmd: [join(dist, "snf-image"), "helper", "build", "--out", join(dist, "helper"), "--helper", join(dist, "snf-image-helper")],
      env: { ...process.env, SNF_IMAGE_CONFIG: process.env.SNF_IMAGE_CONFIG ?? "/dev/null" },
      stdout: "inherit",
      stderr: "inherit",
    });
    if (p.exitCode !== 0) throw new Error("helper image build failed");
  }
  console.log(`done: ${resolve(dist)}`);
}

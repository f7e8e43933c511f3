#!/usr/bin/env bun
/**
 * Build the Debian packages snf-image-host and snf-image-helper into dist/
 * from the executables that build.ts compiled:
 *
 *   bun run build.ts --no-helper-image && bun run packaging/build-deb.ts [--lintian]
 *
 * Each package is staged in a temp tree (files, DEBIAN/control, conffiles,
 * maintainer scripts, md5sums) and packed with `dpkg-deb --build
 * --root-owner-group`. Static inputs live in packaging/debian/; the config
 * file is generated from ConfigSchema (packaging/conffile.ts) and the OS
 * definition by build.ts's writeOsDefinition.
 *
 * Options: --dist DIR   where snf-image and snf-image-helper are (default dist/)
 *          --out DIR    where the .debs go (default dist/)
 *          --fast       gzip instead of xz (for tests: ~30 s instead of ~2 min)
 *          --lintian    run lintian on the result (exit 1 on an error tag)
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeOsDefinition } from "../build.ts";
import { VERSION } from "../src/version.ts";
import { renderConfigFile } from "./conffile.ts";

const ROOT = path.resolve(import.meta.dir, "..");
const DEB = path.join(ROOT, "packaging", "debian");
export const LIB_DIR = "/usr/lib/snf-image";
export const HOST_BIN = `${LIB_DIR}/snf-image`;
export const HELPER_BIN = `${LIB_DIR}/snf-image-helper`;
export const OS_DIR = "/usr/share/ganeti/os/snf-image";
export const CONF_FILE = "/etc/snf-image/snf-image.conf";
const ARCH = "amd64";

function sh(argv: string[], opts: { cwd?: string; stdin?: Uint8Array } = {}): string {
  const p = Bun.spawnSync(argv, { cwd: opts.cwd, stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")} failed (exit ${p.exitCode}): ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

/** The project's maintainer identity (from the changelog template's placeholder). */
export const MAINTAINER = "snf-image maintainers <maintainers@users.noreply.r-seed-aeac38a1.example>";

const fill = (text: string): string => text.replaceAll("@VERSION@", VERSION).replaceAll("@MAINTAINER@", MAINTAINER);

/** Split the source-style control file into the source stanza and binary stanzas (pure). */
export function parseControl(text: string): { source: Map<string, string>; packages: Map<string, string>[] } {
  const stanzas = text
    .trim()
    .split(/\n\s*\n/)
    .map((s) => {
      const m = new Map<string, string>();
      let last = "";
      for (const l of s.split("\n")) {
        if (/^\s/.test(l)) m.set(last, `${m.get(last)}\n${l}`);
        else {
          const i = l.indexOf(":");
          last = l.slice(0, i);
          m.set(last, l.slice(i + 1).trim());
        }
      }
      return m;
    });
  return { source: stanzas[0]!, packages: stanzas.slice(1) };
}

/** Highest GLIBC_x.y symbol version an ELF executable needs (its libc6 dependency). */
export function glibcNeeded(file: string): string {
  const text = fs.readFileSync(file).toString("latin1");
  let best = [2, 2];
  for (const m of text.matchAll(/\0GLIBC_(2)\.(\d+)\0/g)) {
    const v = [Number(m[1]), Number(m[2])];
    if (v[1]! > best[1]!) best = v;
  }
  return best.join(".");
}

function binaryControl(pkg: Map<string, string>, source: Map<string, string>, installedKiB: number, libc: string): string {
  const depends = (pkg.get("Depends") ?? "")
    .replace("${shlibs:Depends}", `libc6 (>= ${libc})`)
    .replace(/^,\s*|,\s*$/g, "");
  const recommends = pkg.get("Recommends")?.replaceAll("${binary:Version}", VERSION);
  const fields: [string, string | undefined][] = [
    ["Package", pkg.get("Package")],
    ["Version", VERSION],
    ["Architecture", pkg.get("Architecture")],
    ["Maintainer", source.get("Maintainer")],
    ["Installed-Size", String(installedKiB)],
    ["Depends", depends || undefined],
    ["Recommends", recommends],
    ["Suggests", pkg.get("Suggests")],
    ["Section", pkg.get("Section") ?? source.get("Section")],
    ["Priority", pkg.get("Priority") ?? source.get("Priority")],
    ["Homepage", source.get("Homepage")],
    ["Description", pkg.get("Description")],
  ];
  return `${fields.filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`).join("\n")}\n`;
}

function put(stage: string, rel: string, data: string | Uint8Array, mode = 0o644): void {
  const p = path.join(stage, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o755 });
  fs.writeFileSync(p, data);
  fs.chmodSync(p, mode);
}

function gz(data: string): Uint8Array {
  return new Uint8Array(Bun.spawnSync(["gzip", "-9n"], { stdin: new TextEncoder().encode(data), stdout: "pipe" }).stdout);
}

function walk(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (r === "DEBIAN") continue;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

function installedSizeKiB(stage: string): number {
  let bytes = 0;
  for (const f of walk(stage)) {
    const st = fs.lstatSync(path.join(stage, f));
    bytes += st.isSymbolicLink() ? 1024 : Math.ceil(st.size / 1024) * 1024;
  }
  return Math.ceil(bytes / 1024);
}

function md5sums(stage: string): string {
  return walk(stage)
    .filter((f) => fs.lstatSync(path.join(stage, f)).isFile())
    .map((f) => `${createHash("md5").update(fs.readFileSync(path.join(stage, f))).digest("hex")}  ${f}\n`)
    .join("");
}

function docs(stage: string, pkg: string, exe: string): void {
  const overrides = fs.readFileSync(path.join(DEB, "lintian-overrides"), "utf8").replaceAll("@PACKAGE@", pkg).replaceAll("@EXE@", exe);
  put(stage, `usr/share/lintian/overrides/${pkg}`, overrides);
  put(stage, `usr/share/doc/${pkg}/copyright`, fs.readFileSync(path.join(DEB, "copyright"), "utf8"));
  put(stage, `usr/share/doc/${pkg}/changelog.gz`, gz(fill(fs.readFileSync(path.join(DEB, "changelog"), "utf8"))));
}

function script(stage: string, name: string, from: string): void {
  put(stage, `DEBIAN/${name}`, fill(fs.readFileSync(from, "utf8")), 0o755);
}

function stageHost(stage: string, hostExe: string): void {
  put(stage, HOST_BIN.slice(1), fs.readFileSync(hostExe), 0o755);
  fs.mkdirSync(path.join(stage, "usr/bin"), { recursive: true });
  fs.symlinkSync("../lib/snf-image/snf-image", path.join(stage, "usr/bin/snf-image"));
  put(stage, "usr/sbin/snf-image-update-helper", fs.readFileSync(path.join(DEB, "snf-image-host/snf-image-update-helper")), 0o755);
  writeOsDefinition(path.join(stage, OS_DIR.slice(1)), HOST_BIN);
  put(stage, CONF_FILE.slice(1), renderConfigFile());
  fs.mkdirSync(path.join(stage, "var/lib/snf-image/helper"), { recursive: true, mode: 0o755 });
  put(stage, "usr/share/man/man1/snf-image.1.gz", gz(fill(fs.readFileSync(path.join(DEB, "snf-image-host/snf-image.1"), "utf8"))));
  put(stage, "usr/share/man/man8/snf-image-update-helper.8.gz", gz(fill(fs.readFileSync(path.join(DEB, "snf-image-host/snf-image-update-helper.8"), "utf8"))));
  docs(stage, "snf-image-host", "snf-image");
  for (const s of ["postinst", "postrm"]) script(stage, s, path.join(DEB, "snf-image-host", s));
  put(stage, "DEBIAN/triggers", fs.readFileSync(path.join(DEB, "snf-image-host/triggers"), "utf8"));
  put(stage, "DEBIAN/conffiles", `${CONF_FILE}\n`);
}

function stageHelper(stage: string, helperExe: string): void {
  put(stage, HELPER_BIN.slice(1), fs.readFileSync(helperExe), 0o755);
  docs(stage, "snf-image-helper", "snf-image-helper");
  script(stage, "postinst", path.join(DEB, "snf-image-helper", "postinst"));
}

export interface BuiltDebs {
  host: string;
  helper: string;
}

/** dpkg-deb compression: xz on all cores by default; gzip with `fast` (about 3x quicker, 30% larger). */
function compression(fast: boolean): string[] {
  return fast ? ["-Zgzip", "-z6"] : ["-Zxz", "-z6", `--threads-max=${os.availableParallelism()}`];
}

export function buildDebs(o: { distDir?: string; outDir?: string; fast?: boolean } = {}): BuiltDebs {
  const distDir = path.resolve(o.distDir ?? path.join(ROOT, "dist"));
  const outDir = path.resolve(o.outDir ?? path.join(ROOT, "dist"));
  const hostExe = path.join(distDir, "snf-image");
  const helperExe = path.join(distDir, "snf-image-helper");
  for (const f of [hostExe, helperExe]) {
    if (!fs.existsSync(f)) throw new Error(`${f} missing: run \`bun run build.ts --no-helper-image\` first`);
  }
  const { source, packages } = parseControl(fill(fs.readFileSync(path.join(DEB, "control"), "utf8")));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-deb-"));
  const prevUmask = process.umask(0o022);
  try {
    fs.mkdirSync(outDir, { recursive: true });
    const built: Record<string, string> = {};
    for (const pkg of packages) {
      const name = pkg.get("Package")!;
      const stage = path.join(tmp, name);
      fs.mkdirSync(stage, { mode: 0o755 });
      if (name === "snf-image-host") stageHost(stage, hostExe);
      else if (name === "snf-image-helper") stageHelper(stage, helperExe);
      else throw new Error(`unknown package ${name} in packaging/debian/control`);
      const exe = name === "snf-image-host" ? hostExe : helperExe;
      put(stage, "DEBIAN/md5sums", md5sums(stage));
      put(stage, "DEBIAN/control", binaryControl(pkg, source, installedSizeKiB(stage), glibcNeeded(exe)));
      fs.chmodSync(path.join(stage, "DEBIAN"), 0o755);
      const deb = path.join(outDir, `${name}_${VERSION}_${ARCH}.deb`);
      sh(["dpkg-deb", "--root-owner-group", ...compression(!!o.fast), "--build", stage, deb]);
      built[name] = deb;
    }
    return { host: built["snf-image-host"]!, helper: built["snf-image-helper"]! };
  } finally {
    process.umask(prevUmask);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const opt = (n: string) => {
    const i = argv.indexOf(n);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const debs = buildDebs({ distDir: opt("--dist"), outDir: opt("--out"), fast: argv.includes("--fast") });
  for (const d of [debs.host, debs.helper]) console.log(`built ${d} (${(fs.statSync(d).size / 2 ** 20).toFixed(1)} MiB)`);
  if (argv.includes("--lintian")) {
    const p = Bun.spawnSync(["lintian", "--no-tag-display-limit", "--info", debs.host, debs.helper], { stdout: "inherit", stderr: "inherit" });
    if (p.exitCode !== 0) process.exit(1);
  }
}

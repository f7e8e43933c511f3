/**
 * UFS write support for the helper kernel. Debian builds fs/ufs without
 * CONFIG_UFS_FS_WRITE, so *BSD images could only be mounted read-only. The
 * original shipped its own kernel for that; we build just ufs.ko out of tree
 * from Debian's own `linux-source-X.Y` against `linux-headers-<version>` of
 * EXACTLY the helper kernel (same Debian package version, so vermagic and
 * symbol CRCs match), with the write code switched on. The module is not
 * signed: Debian kernels accept unsigned modules (MODULE_SIG_FORCE is off)
 * unless lockdown is on, which only EFI Secure Boot turns on; the helper
 * boots PVH, never through EFI.
 *
 * Cached as <kernel cache>/<version>/ufs-write-<source version>/ufs.ko, so a
 * warm build does no work here. Without the build packages the helper image
 * is built without it (prepareUfsModule says why) and *BSD images fail in
 * MountImage with one line naming the packages.
 */
import fs from "node:fs";
import path from "node:path";
import { SnfError } from "../errors.ts";
import { exec } from "../exec.ts";

export interface UfsModule {
  /** path of the built, debug-stripped ufs.ko */
  path: string;
  /** Debian version of linux-source-X.Y it was built from */
  sourceVersion: string;
  source: "cache" | "built";
}

const SRC_DIR = "/usr/src";

/** "6.1.0-57-amd64" → "6.1" (pure). */
export function sourceSeries(kernelVersion: string): string | null {
  const m = /^(\d+\.\d+)\.\d+-/.exec(kernelVersion);
  return m ? m[1]! : null;
}

/** The Debian packages the UFS build needs for a kernel version (pure). */
export function ufsBuildPackages(kernelVersion: string): string[] {
  const series = sourceSeries(kernelVersion) ?? "X.Y";
  return [`linux-source-${series}`, `linux-headers-${kernelVersion}`, "make", "gcc"];
}

async function debVersion(pkg: string): Promise<string | null> {
  const r = await exec(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", pkg], { allowFail: true });
  const m = /^installed (\S+)$/.exec(r.stdout.trim());
  return r.exitCode === 0 && m ? m[1]! : null;
}

/**
 * The UFS module with write support for `kernelVersion`, from the cache or
 * built now. Returns a one-line reason instead when the build packages are
 * missing or do not match the kernel; throws if a build that could run fails.
 */
export async function prepareUfsModule(
  kernelVersion: string,
  kernelCacheDir: string,
  log: (l: string) => void = () => {},
): Promise<UfsModule | { missing: string }> {
  const series = sourceSeries(kernelVersion);
  if (!series) return { missing: `cannot tell the source series of kernel ${kernelVersion}` };
  const srcPkg = `linux-source-${series}`;
  const hdrPkg = `linux-headers-${kernelVersion}`;
  const need = `install ${ufsBuildPackages(kernelVersion).join(" ")} and rebuild the helper`;
  const [srcVer, hdrVer, kernelPkgVer] = await Promise.all([debVersion(srcPkg), debVersion(hdrPkg), kernelPackageVersion(kernelVersion)]);
  if (!srcVer || !hdrVer) return { missing: `${!srcVer ? srcPkg : hdrPkg} is not installed: ${need}` };
  if (srcVer !== hdrVer) return { missing: `${srcPkg} ${srcVer} does not match ${hdrPkg} ${hdrVer}: ${need}` };
  if (kernelPkgVer && kernelPkgVer !== hdrVer) {
    return { missing: `${hdrPkg} ${hdrVer} does not match the kernel package ${kernelPkgVer}: ${need}` };
  }
  const dir = path.join(kernelCacheDir, kernelVersion, `ufs-write-${srcVer.replace(/[^A-Za-z0-9.+~-]/g, "_")}`);
  const ko = path.join(dir, "ufs.ko");
  if (fs.existsSync(ko)) return { path: ko, sourceVersion: srcVer, source: "cache" };
  for (const tool of ["make", "gcc", "tar", "xz", "strip"]) {
    if (!Bun.which(tool)) return { missing: `${tool} not found: ${need}` };
  }
  const tarball = path.join(SRC_DIR, `linux-source-${series}.tar.xz`);
  const headers = path.join(SRC_DIR, hdrPkg);
  if (!fs.existsSync(tarball) || !fs.existsSync(path.join(headers, "Makefile"))) {
    return { missing: `${tarball} or ${headers} is missing: ${need}` };
  }
  log(`building ufs.ko with write support from ${srcPkg} ${srcVer} for ${kernelVersion}`);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(dir), ".ufs-build-"));
  try {
    await exec(["tar", "-xJf", tarball, "-C", tmp, "--strip-components=3", `linux-source-${series}/fs/ufs/`]);
    if (!fs.existsSync(path.join(tmp, "super.c"))) throw new SnfError(`${tarball} has no fs/ufs/super.c`);
    // out-of-tree: CONFIG_UFS_FS on the make line selects the object, the
    // C define switches the write code on (autoconf.h does not have it)
    // (the temp dir is mapped to fs/ufs/ in the strings, so the module is byte-for-byte reproducible)
    await exec(["make", "-s", "-C", headers, `M=${tmp}`, "CONFIG_UFS_FS=m", `KCFLAGS=-DCONFIG_UFS_FS_WRITE=1 -ffile-prefix-map=${tmp}/=fs/ufs/`, "modules"], {
      env: { KBUILD_BUILD_TIMESTAMP: "", SOURCE_DATE_EPOCH: "0" },
    });
    const built = path.join(tmp, "ufs.ko");
    if (!fs.existsSync(built)) throw new SnfError("the ufs module build produced no ufs.ko");
    await exec(["strip", "--strip-debug", built]);
    const body = fs.readFileSync(built);
    if (body.includes("compiled with read-only support")) throw new SnfError("the built ufs.ko has no write support");
    if (!body.includes(`vermagic=${kernelVersion} `)) throw new SnfError(`the built ufs.ko is not for kernel ${kernelVersion}`);
    const out = fs.mkdtempSync(path.join(path.dirname(dir), ".ufs-out-"));
    fs.chmodSync(out, 0o755);
    fs.copyFileSync(built, path.join(out, "ufs.ko"));
    try {
      fs.renameSync(out, dir);
    } catch {
      fs.rmSync(out, { recursive: true, force: true }); // a concurrent build won
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { path: ko, sourceVersion: srcVer, source: "built" };
}

/** Debian version of linux-image-<version>: installed, else apt's candidate (what kernel.ts downloads). */
export async function kernelPackageVersion(kernelVersion: string): Promise<string | null> {
  const installed = await debVersion(`linux-image-${kernelVersion}`);
  if (installed) return installed;
  const r = await exec(["apt-cache", "show", "--no-all-versions", `linux-image-${kernelVersion}`], { allowFail: true });
  const m = /^Version:\s*(\S+)/m.exec(r.stdout);
  return r.exitCode === 0 && m ? m[1]! : null;
}

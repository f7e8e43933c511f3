/**
 * The helper VM's kernel: Debian's `linux-image-amd64` dependency. An
 * installed kernel (/boot/vmlinuz-V + /lib/modules/V) is used as is;
 * otherwise the package is fetched with `apt-get download`, unpacked with
 * `dpkg -x` and depmod'ed into a cache directory keyed by kernel version. In
 * both cases the uncompressed, PVH-bootable `vmlinux` is extracted from the
 * xz payload of vmlinuz into the cache, so a warm rebuild does no work here.
 */
import fs from "node:fs";
import path from "node:path";
import { SnfError, errnoOf } from "../errors.ts";
import { exec, requireTool } from "../exec.ts";

export const DEFAULT_KERNEL_CACHE = "/var/cache/snf-image/kernel";
const META_PACKAGE = "linux-image-amd64";
const DONE = ".complete";

export interface KernelInfo {
  /** e.g. 6.1.0-56-amd64 */
  version: string;
  /** uncompressed PVH ELF */
  vmlinux: string;
  /** root under which lib/modules/<version> lives ("/" for an installed kernel) */
  modRoot: string;
  source: "installed" | "cache" | "downloaded";
}

/** Parse `apt-cache depends linux-image-amd64` output (pure). */
export function parseKernelDepends(text: string): string | null {
  const m = /Depends:\s*linux-image-(\d[^\s]*)/.exec(text);
  return m ? m[1]! : null;
}

async function candidateVersion(): Promise<string | null> {
  const r = await exec(["apt-cache", "depends", META_PACKAGE], { allowFail: true });
  return r.exitCode === 0 ? parseKernelDepends(r.stdout) : null;
}

function isInstalled(v: string): boolean {
  return fs.existsSync(`/boot/vmlinuz-${v}`) && fs.existsSync(`/lib/modules/${v}/modules.dep`);
}

function cachedVersions(cacheDir: string): string[] {
  if (!fs.existsSync(cacheDir)) return [];
  return fs
    .readdirSync(cacheDir)
    .filter((d) => !d.startsWith(".") && fs.existsSync(path.join(cacheDir, d, DONE)))
    .sort(compareVersions);
}

function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

export async function prepareKernel(cacheDir = DEFAULT_KERNEL_CACHE, log: (l: string) => void = () => {}): Promise<KernelInfo> {
  let version = await candidateVersion();
  if (!version) {
    const fallback = installedNewest() ?? cachedVersions(cacheDir).at(-1);
    if (!fallback) throw new SnfError(`cannot find a kernel: \`apt-cache depends ${META_PACKAGE}\` names none and ${cacheDir} is empty`);
    version = fallback;
    log(`apt does not name a kernel; using ${version}`);
  }
  const dir = path.join(cacheDir, version);
  if (isInstalled(version)) {
    const vmlinux = path.join(dir, "vmlinux");
    if (!fs.existsSync(path.join(dir, DONE))) {
      log(`extracting vmlinux from installed /boot/vmlinuz-${version}`);
      const tmp = freshTmp(cacheDir, version);
      try {
        await extractVmlinux(`/boot/vmlinuz-${version}`, path.join(tmp, "vmlinux"));
        fs.writeFileSync(path.join(tmp, DONE), "installed\n");
        publish(tmp, dir);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    }
    return { version, vmlinux, modRoot: "/", source: "installed" };
  }
  if (fs.existsSync(path.join(dir, DONE))) {
    return { version, vmlinux: path.join(dir, "vmlinux"), modRoot: path.join(dir, "root"), source: "cache" };
  }
  log(`fetching linux-image-${version} into ${cacheDir}`);
  requireTool("dpkg", "dpkg");
  requireTool("depmod", "kmod");
  const tmp = freshTmp(cacheDir, version);
  try {
    await exec(["apt-get", "download", "-q", `linux-image-${version}`], { cwd: tmp });
    const deb = fs.readdirSync(tmp).find((f) => f.endsWith(".deb"));
    if (!deb) throw new SnfError(`apt-get download linux-image-${version} produced no .deb`);
    const root = path.join(tmp, "root");
    await exec(["dpkg", "-x", path.join(tmp, deb), root]);
    fs.rmSync(path.join(tmp, deb));
    // usr-merged packages ship /usr/lib/modules; older ones /lib/modules
    const modDir = ["lib/modules", "usr/lib/modules"].map((d) => path.join(root, d)).find((d) => fs.existsSync(path.join(d, version)));
    if (!modDir) throw new SnfError(`linux-image-${version} has no lib/modules/${version}`);
    if (modDir !== path.join(root, "lib/modules")) {
      fs.mkdirSync(path.join(root, "lib"), { recursive: true });
      fs.renameSync(modDir, path.join(root, "lib/modules"));
    }
    await exec(["depmod", "-b", root, version]);
    const vmlinuz = [path.join(root, "boot", `vmlinuz-${version}`)].find((f) => fs.existsSync(f));
    if (!vmlinuz) throw new SnfError(`linux-image-${version} has no boot/vmlinuz-${version}`);
    await extractVmlinux(vmlinuz, path.join(tmp, "vmlinux"));
    // only the modules are needed from here on
    for (const d of fs.readdirSync(root)) if (d !== "lib") fs.rmSync(path.join(root, d), { recursive: true, force: true });
    fs.writeFileSync(path.join(tmp, DONE), `linux-image-${version}\n`);
    publish(tmp, dir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  // older kernels are no longer needed (a built helper image holds its own copy)
  for (const old of cachedVersions(cacheDir)) {
    if (old !== version && !isInstalled(old)) fs.rmSync(path.join(cacheDir, old), { recursive: true, force: true });
  }
  return { version, vmlinux: path.join(dir, "vmlinux"), modRoot: path.join(dir, "root"), source: "downloaded" };
}

function installedNewest(): string | null {
  if (!fs.existsSync("/boot")) return null;
  const vs = fs
    .readdirSync("/boot")
    .filter((f) => f.startsWith("vmlinuz-"))
    .map((f) => f.slice("vmlinuz-".length))
    .filter(isInstalled)
    .sort(compareVersions);
  return vs.length ? vs[vs.length - 1]! : null;
}

function freshTmp(cacheDir: string, version: string): string {
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
  return fs.mkdtempSync(path.join(cacheDir, `.${version}.tmp-`));
}

/** Move a finished cache entry into place; a concurrent builder may have won. */
function publish(tmp: string, dir: string): void {
  try {
    fs.renameSync(tmp, dir);
  } catch (e) {
    const code = errnoOf(e);
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
    if (!fs.existsSync(path.join(dir, DONE))) {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
    }
  }
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** Decompress the xz payload of a bzImage into an ELF vmlinux and check it can boot via PVH. */
export async function extractVmlinux(vmlinuz: string, out: string): Promise<void> {
  requireTool("xz", "xz-utils");
  const data = fs.readFileSync(vmlinuz);
  const at = data.indexOf(XZ_MAGIC);
  if (at < 0) throw new SnfError(`${vmlinuz} has no xz payload (kernel not built with CONFIG_KERNEL_XZ)`);
  const proc = Bun.spawn(["xz", "-dc", "--single-stream"], {
    stdin: data.subarray(at),
    stdout: Bun.file(out),
    stderr: "pipe",
  });
  const [err, rc] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (rc !== 0) throw new SnfError(`cannot decompress ${vmlinuz}: ${err.trim().split("\n").pop()}`);
  const elf = fs.readFileSync(out);
  if (!hasPvhNote(elf)) throw new SnfError(`${vmlinuz} is not PVH-bootable (no Xen PHYS32_ENTRY note; needs CONFIG_PVH)`);
}

/** True if an ELF64 image carries the Xen PVH entry note (name "Xen", type 18). Pure. */
export function hasPvhNote(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let off = Number(elf.readBigUInt64LE(ph + 8));
    const end = off + Number(elf.readBigUInt64LE(ph + 32));
    while (off + 12 <= end && end <= elf.length) {
      const namesz = elf.readUInt32LE(off);
      const descsz = elf.readUInt32LE(off + 4);
      const type = elf.readUInt32LE(off + 8);
      const name = elf.subarray(off + 12, off + 12 + namesz).toString("latin1").replace(/\0+$/, "");
      if (name === "Xen" && type === 18) return true;
      off += 12 + align4(namesz) + align4(descsz);
    }
  }
  return false;
}

const align4 = (n: number) => (n + 3) & ~3;

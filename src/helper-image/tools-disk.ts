/**
 * The read-only "tools disk": an ext4 image (no journal) built with
 * `mke2fs -d` from a staging tree, so no mount and no loop device. It holds
 * the helper executable, glibc and the libraries of every tool, the tools
 * themselves (copied from the host's Debian packages), busybox, the
 * on-demand kernel modules with a depmod'ed modules.dep, and shim 2 (/init2).
 */
import fs from "node:fs";
import path from "node:path";
import { SnfError } from "../errors.ts";
import { exec, requireTool } from "../exec.ts";
import { sharedLibs } from "./libs.ts";
import { UFS_WRITE_MARKER } from "../protocol.ts";

export const HELPER_PATH_IN_GUEST = "/usr/lib/snf-image-helper/snf-image-helper";


/** Host tools copied onto the tools disk: [name, Debian package, required]. */
export const TOOLS: ReadonlyArray<readonly [string, string, boolean]> = [
  ["e2fsck", "e2fsprogs", true], ["resize2fs", "e2fsprogs", true], ["tune2fs", "e2fsprogs", true],
  ["mke2fs", "e2fsprogs", true], ["dumpe2fs", "e2fsprogs", true], ["debugfs", "e2fsprogs", true],
  ["sfdisk", "fdisk", true], ["sgdisk", "gdisk", false],
  ["blkid", "util-linux", true], ["mount", "mount", true], ["umount", "mount", true],
  ["losetup", "mount", true], ["partx", "util-linux", true], ["mkswap", "util-linux", true],
  ["ntfs-3g", "ntfs-3g", true], ["ntfsfix", "ntfs-3g", true], ["ntfsresize", "ntfs-3g", true],
  ["ssh-keygen", "openssh-client", true],
  ["xfs_growfs", "xfsprogs", true], ["xfs_repair", "xfsprogs", true], ["xfs_db", "xfsprogs", true],
  ["xfs_admin", "xfsprogs", true],
  ["btrfs", "btrfs-progs", true],
  ["mkpasswd", "whois", true],
  ["bash", "bash", true],
];
/** Libraries the helper opens with dlopen (bun:ffi), which ldd cannot see. */
const DLOPEN_LIBS = ["libcrypt.so.1"];
/** Small host config files the tools read. */
const ETC_FILES = ["/etc/mke2fs.conf"];
const SEARCH = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
const LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib"];

export interface ToolsStageInput {
  stage: string;
  helperBinary: string;
  busybox: string;
  init2: string;
  modRoot: string;
  kernelVersion: string;
  /** module paths relative to lib/modules/VERSION */
  modules: string[];
  /** ufs.ko with write support (ufs.ts), replacing Debian's read-only one */
  ufsModule?: { path: string; sourceVersion: string };
  log: (l: string) => void;
}

function which(name: string): string | null {
  for (const d of SEARCH) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {}
  }
  return null;
}

export async function stageTools(i: ToolsStageInput): Promise<{ missing: string[] }> {
  const S = i.stage;
  fs.mkdirSync(S, { recursive: true });
  // mirror the host's /usr merge so that ldd's paths and the interpreter resolve
  for (const top of ["bin", "sbin", "lib", "lib64"]) {
    const host = `/${top}`;
    const st = fs.lstatSync(host, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(host), path.join(S, top));
    else fs.mkdirSync(path.join(S, top), { recursive: true });
  }
  for (const d of ["usr/bin", "usr/sbin", "usr/lib", "etc", "proc", "sys", "dev", "tmp", "run", "mnt", "root"]) {
    fs.mkdirSync(path.join(S, d), { recursive: true });
  }
  fs.chmodSync(path.join(S, "tmp"), 0o1777);
  fs.chmodSync(path.join(S, "root"), 0o700);

  const copied = new Set<string>();
  /** Copy host file `src` (following symlinks) to the same directory path inside the stage. */
  const put = (src: string, mode: number, dest?: string) => {
    const target = dest ?? path.join(fs.realpathSync(path.dirname(src)), path.basename(src));
    if (copied.has(target)) return;
    copied.add(target);
    const out = path.join(S, target);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.copyFileSync(fs.realpathSync(src), out);
    fs.chmodSync(out, mode);
  };
  const putWithLibs = async (src: string, mode: number, dest?: string) => {
    put(src, mode, dest);
    for (const lib of await sharedLibs(src)) put(lib, 0o755);
  };

  await putWithLibs(i.helperBinary, 0o755, HELPER_PATH_IN_GUEST);
  put(i.busybox, 0o755, "/usr/bin/busybox");

  const missing: string[] = [];
  const toolNames = new Set<string>();
  for (const [name, pkg, required] of TOOLS) {
    const p = which(name);
    if (!p) {
      if (required) throw new SnfError(`${name} not found: install ${pkg}`);
      missing.push(name);
      i.log(`optional tool ${name} not found (package ${pkg}); the helper image will not have it`);
      continue;
    }
    toolNames.add(name);
    await putWithLibs(p, 0o755);
  }
  // ntfs-3g is also reached as mount -t ntfs-3g
  const ntfs = which("ntfs-3g");
  if (ntfs) {
    fs.symlinkSync("ntfs-3g", path.join(S, fs.realpathSync(path.dirname(ntfs)), "mount.ntfs-3g"));
    toolNames.add("mount.ntfs-3g");
  }
  for (const lib of DLOPEN_LIBS) {
    const p = LIB_DIRS.map((d) => path.join(d, lib)).find((f) => fs.existsSync(f));
    if (!p) throw new SnfError(`${lib} not found: install libcrypt1`);
    put(p, 0o755);
  }

  // busybox applets for everything the full tools do not provide
  const list = await exec([i.busybox, "--list-full"]);
  for (const rel of list.stdout.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const name = path.basename(rel);
    if (toolNames.has(name)) continue;
    const link = path.join(S, rel);
    if (fs.lstatSync(link, { throwIfNoEntry: false })) continue;
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync("/usr/bin/busybox", link);
  }
  // the kernel's request_module() runs /sbin/modprobe
  const modprobe = path.join(S, "sbin/modprobe");
  if (!fs.lstatSync(modprobe, { throwIfNoEntry: false })) fs.symlinkSync("/usr/bin/busybox", modprobe);

  // on-demand kernel modules + modules.dep
  const md = path.join(S, "lib/modules", i.kernelVersion);
  const kd = path.join(i.modRoot, "lib/modules", i.kernelVersion);
  for (const rel of i.modules) {
    fs.mkdirSync(path.dirname(path.join(md, rel)), { recursive: true });
    fs.copyFileSync(path.join(kd, rel), path.join(md, rel));
  }
  if (i.ufsModule) {
    const rel = "kernel/fs/ufs/ufs.ko";
    fs.mkdirSync(path.dirname(path.join(md, rel)), { recursive: true });
    fs.copyFileSync(i.ufsModule.path, path.join(md, rel));
    // the helper reads this marker to know MountImage can write UFS
    fs.writeFileSync(path.join(S, UFS_WRITE_MARKER), `${i.ufsModule.sourceVersion}\n`);
  }
  for (const f of ["modules.order", "modules.builtin", "modules.builtin.modinfo"]) {
    if (fs.existsSync(path.join(kd, f))) fs.copyFileSync(path.join(kd, f), path.join(md, f));
  }
  requireTool("depmod", "kmod");
  await exec(["depmod", "-b", S, i.kernelVersion]);

  // /etc: users for ssh-keygen & co, mtab, tool configs, ld.so.cache
  fs.writeFileSync(path.join(S, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  fs.writeFileSync(path.join(S, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  fs.writeFileSync(path.join(S, "etc/hostname"), "snf-image-helper\n");
  fs.symlinkSync("/proc/self/mounts", path.join(S, "etc/mtab"));
  for (const f of ETC_FILES) if (fs.existsSync(f)) fs.copyFileSync(f, path.join(S, f));
  fs.writeFileSync(path.join(S, "etc/ld.so.conf"), `${LIB_DIRS.join("\n")}\n`);
  await exec(["ldconfig", "-r", S]);

  fs.writeFileSync(path.join(S, "init2"), i.init2, { mode: 0o755 });
  return { missing };
}

/** Apparent size of a tree in bytes (symlinks count as their inode). */
function treeBytes(dir: string): { bytes: number; inodes: number } {
  let bytes = 0;
  let inodes = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      inodes++;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) bytes += fs.statSync(p).size;
    }
  };
  walk(dir);
  return { bytes, inodes };
}

/** mke2fs -d the stage into a fresh raw ext4 image without journal. */
export async function makeToolsImage(stage: string, out: string): Promise<void> {
  requireTool("mke2fs", "e2fsprogs");
  const { bytes, inodes } = treeBytes(stage);
  const blocks4k = Math.ceil((bytes * 1.08) / 4096) + inodes + 4096; // data + slack + metadata
  const size = Math.ceil((blocks4k * 4096) / (1 << 20)) << 20;
  fs.writeFileSync(out, "");
  fs.truncateSync(out, size);
  await exec(
    ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^has_journal", "-m", "0", "-N", String(inodes + 1024),
     "-L", "snf-tools", "-E", "root_owner=0:0", "-d", stage, out],
  );
}

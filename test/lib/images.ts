/**
 * Real Debian test images, built with debootstrap and cached outside the repo.
 *
 * Two cache levels under SNF_TEST_CACHE (default /var/cache/snf-image-test/images):
 *   rootfs/<suite>-<hash>.tar.zst  one debootstrap per suite + package set
 *   debs/                          debootstrap --cache-dir, shared by all suites
 *   <recipeKey>/                   disk.raw (sparse diskdump), meta.json, and for
 *                                  bootable recipes vmlinuz + initrd.img
 * A recipe directory appears by one atomic rename, so an interrupted build never
 * leaves a half entry; a lock directory keeps two processes from building the
 * same thing at once. Needs root (debootstrap, mkfs, chroot, xfs loop mount).
 */
import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { chmod, mkdir, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Bump when the build steps change in a way that changes the image. */
export const RECIPE_VERSION = 2;
const ROOTFS_VERSION = 1;
const MIRROR = "http://deb.debian.org/debian";

export type Suite = "bookworm" | "trixie" | "bullseye";

export interface ImageRecipe {
  suite: Suite;
  label: "msdos" | "gpt";
  rootFs: "ext4" | "xfs" | "btrfs";
  separateBoot?: boolean;
  /** Whole disk size; default 2048. */
  sizeMiB?: number;
  /** Include linux-image-amd64 and extract vmlinuz/initrd.img next to the image. */
  bootable?: boolean;
  extraPackages?: string[];
  /** Extra non-root users (home dir, bash, locked password). */
  users?: string[];
  /** Test-only: a known root password (otherwise root's password is locked). */
  rootPassword?: string;
  /**
   * What brings the network up: "ifupdown" (default; /etc/network/interfaces
   * with eth0 dhcp), "networkd" (no ifupdown, systemd-networkd enabled) or
   * "netplan" (netplan.io, networkd backend, no ifupdown).
   */
  network?: "ifupdown" | "networkd" | "netplan";
  /**
   * Install Debian's cloud-init (+ cloud-guest-utils for growpart, fdisk for
   * its sfdisk, locales for its locale module) as a cloud image has it:
   * never run in the template.
   */
  cloudInit?: boolean;
}

export interface DebianImage {
  /** Raw diskdump (sparse). Treat as read-only: it is the cache entry. */
  path: string;
  kernel?: string;
  initrd?: string;
  rootUuid: string;
  rootPartition: number;
  bootUuid?: string;
  bootPartition?: number;
  recipeKey: string;
}

export function cacheDir(): string {
  return process.env.SNF_TEST_CACHE || "/var/cache/snf-image-test/images";
}

const log = (s: string) => console.error(`[images] ${s}`);

// ---------------------------------------------------------------- exec

async function sh(argv: string[], o: { stdin?: string; cwd?: string } = {}): Promise<string> {
  const p = Bun.spawn(argv, {
    cwd: o.cwd,
    stdin: o.stdin === undefined ? "ignore" : new TextEncoder().encode(o.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) {
    const tail = (err || out).trim().split("\n").slice(-15).join("\n");
    throw new Error(`${argv.slice(0, 3).join(" ")} … exited ${code}:\n${tail}`);
  }
  return out;
}

async function step<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  log(`${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

// ---------------------------------------------------------------- keys, locks

function hash(x: unknown): string {
  return createHash("sha256").update(JSON.stringify(x)).digest("hex").slice(0, 16);
}

function basePackages(r: ImageRecipe): string[] {
  const dhcp = r.suite === "trixie" ? "dhcpcd-base" : "isc-dhcp-client";
  // The kernel is always debootstrapped, so one debootstrap serves bootable and
  // non-bootable recipes of a suite; non-bootable images purge it again (dpkg).
  const net = r.network ?? "ifupdown";
  const p = ["systemd-sysv", "udev", "openssh-server", "iproute2", "hostname",
    "linux-image-amd64", "initramfs-tools", ...(net === "ifupdown" ? ["ifupdown", dhcp] : []),
    ...(net === "netplan" ? ["netplan.io"] : [])];
  // no per-filesystem tools: every recipe of a suite shares one debootstrap
  // (the initramfs has the xfs/btrfs modules; add xfsprogs etc. via extraPackages)
  return [...new Set([...p, ...(r.extraPackages ?? [])])].sort();
}

/**
 * Packages apt-get installs on top of the cached debootstrap of basePackages():
 * debootstrap --include cannot configure cloud-init's python stack (it fails
 * in python3-cryptography's postinst).
 */
function aptPackages(r: ImageRecipe): string[] {
  // locales: cloud-init's locale module fails without locale-gen (status: error)
  return r.cloudInit ? ["cloud-guest-utils", "cloud-init", "fdisk", "locales"] : [];
}

function normalize(r: ImageRecipe) {
  return {
    v: RECIPE_VERSION,
    suite: r.suite,
    label: r.label,
    rootFs: r.rootFs,
    separateBoot: !!r.separateBoot,
    sizeMiB: r.sizeMiB ?? 2048,
    bootable: !!r.bootable,
    packages: basePackages(r),
    users: [...(r.users ?? [])].sort(),
    rootPassword: r.rootPassword ?? null,
    // only when not the default, so existing recipes keep their cache keys
    ...(r.network && r.network !== "ifupdown" ? { network: r.network } : {}),
    ...(r.cloudInit ? { cloudInit: aptPackages(r), locale: "en_US.UTF-8" } : {}),
  };
}

/** Stable cache key of a recipe: readable prefix + hash of everything that shapes the image. */
export function recipeKey(r: ImageRecipe): string {
  const n = normalize(r);
  return `${n.suite}-${n.label}-${n.rootFs}${n.separateBoot ? "-boot" : ""}${n.bootable ? "-k" : ""}-${hash(n)}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** mkdir-based lock; a lock whose owner died is taken over. */
async function withLock<T>(name: string, f: () => Promise<T>): Promise<T> {
  const dir = join(cacheDir(), `.lock-${name}`);
  let waited = false;
  for (;;) {
    try {
      mkdirSync(dir);
      await writeFile(join(dir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(await readFile(join(dir, "pid"), "utf8").catch(() => "0"));
      if (pid && !pidAlive(pid)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (!pid) {
        // being created right now, or a crash between mkdir and writeFile
        const age = Date.now() - (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
        if (age > 10_000) rmSync(dir, { recursive: true, force: true });
      }
      if (!waited) log(`waiting for another build of ${name} (lock ${dir})`);
      waited = true;
      await Bun.sleep(1000);
    }
  }
  try {
    return await f();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Remove temp dirs left by builds whose process died. */
function sweepTemp(): void {
  for (const n of readdirSync(cacheDir())) {
    const m = /^\.tmp-.*-(\d+)$/.exec(n);
    if (m && !pidAlive(Number(m[1]))) {
      const d = join(cacheDir(), n);
      // an xfs build may have died with its loop mount in place
      Bun.spawnSync(["umount", "-l", join(d, "work", "mnt")], { stderr: "ignore", stdout: "ignore" });
      Bun.spawnSync(["umount", "-l", join(d, "work")], { stderr: "ignore", stdout: "ignore" });
      Bun.spawnSync(["rm", "-rf", d]);
    }
  }
}

/**
 * Run f with a tmpfs mounted at dir: dpkg's fsyncs, mke2fs -d reads and the
 * final rm of ~20k files cost seconds instead of minutes on a busy disk.
 */
async function withTmpfs<T>(dir: string, f: () => Promise<T>): Promise<T> {
  await mkdir(dir, { recursive: true });
  await sh(["mount", "-t", "tmpfs", "-o", "size=8G,mode=755", "snf-test-build", dir]);
  try {
    return await f();
  } finally {
    Bun.spawnSync(["umount", "-l", dir]);
  }
}

// ---------------------------------------------------------------- rootfs level

/** debootstrap once per suite + package set; cached as a tar.zst of the tree. */
async function baseRootfs(r: ImageRecipe): Promise<string> {
  if (aptPackages(r).length > 0) return aptRootfs(r);
  const pkgs = basePackages(r);
  const name = `${r.suite}-${hash({ v: ROOTFS_VERSION, suite: r.suite, pkgs })}`;
  const file = join(cacheDir(), "rootfs", `${name}.tar.zst`);
  if (existsSync(file)) return file;
  return withLock(`rootfs-${name}`, async () => {
    if (existsSync(file)) return file;
    mkdirSync(join(cacheDir(), "rootfs"), { recursive: true });
    mkdirSync(join(cacheDir(), "debs"), { recursive: true });
    const tmp = join(cacheDir(), `.tmp-rootfs-${name}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      const work = join(tmp, "work");
      const tree = join(work, "root");
      await withTmpfs(work, async () => {
        await step(`debootstrap ${r.suite} (${pkgs.join(",")})`, () =>
          sh([
            "debootstrap", "--variant=minbase", `--include=${pkgs.join(",")}`,
            `--cache-dir=${join(cacheDir(), "debs")}`, r.suite, tree, MIRROR,
          ]),
        );
        await sh(["sh", "-c", `rm -f '${tree}'/var/cache/apt/archives/*.deb '${tree}'/var/lib/apt/lists/*_Packages`]);
        await step(`tar rootfs ${name}`, () =>
          sh(["sh", "-c",
            `tar --numeric-owner --xattrs --xattrs-include='*' -C '${tree}' -cf - . | zstd -q -T0 -3 -o '${tmp}/rootfs.tar.zst'`]),
        );
      });
      renameSync(join(tmp, "rootfs.tar.zst"), file);
      return file;
    } finally {
      Bun.spawnSync(["rm", "-rf", tmp]);
    }
  });
}

/** The debootstrap rootfs of the recipe without its aptPackages(), plus those (apt-get in a chroot). */
async function aptRootfs(r: ImageRecipe): Promise<string> {
  const base = await baseRootfs({ ...r, cloudInit: false });
  const apt = aptPackages(r);
  const name = `${r.suite}-${hash({ v: ROOTFS_VERSION, suite: r.suite, pkgs: basePackages(r), apt, locale: "en_US.UTF-8" })}`;
  const file = join(cacheDir(), "rootfs", `${name}.tar.zst`);
  if (existsSync(file)) return file;
  return withLock(`rootfs-${name}`, async () => {
    if (existsSync(file)) return file;
    const tmp = join(cacheDir(), `.tmp-rootfs-${name}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      const work = join(tmp, "work");
      const tree = join(work, "root");
      await withTmpfs(work, async () => {
        await mkdir(tree);
        await sh(["sh", "-c", `zstd -q -dc '${base}' | tar --numeric-owner --xattrs --xattrs-include='*' -C '${tree}' -xpf -`]);
        // no service starts in the chroot
        await writeFile(join(tree, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n");
        await chmod(join(tree, "usr/sbin/policy-rc.d"), 0o755);
        await sh(["cp", "/etc/resolv.conf", join(tree, "etc/resolv.conf")]);
        await step(`apt-get install ${apt.join(",")}`, () =>
          sh(["chroot", tree, "sh", "-c",
            "export DEBIAN_FRONTEND=noninteractive; apt-get -q update && " +
            `apt-get -q -y --no-install-recommends install ${apt.join(" ")} && apt-get clean` +
            // as Debian's cloud images: cloud-init's locale module sets en_US.UTF-8, and
            // Debian's locale-gen only makes what /etc/locale.gen enables
            (apt.includes("locales") ? " && sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen" : "")]),
        );
        await rm(join(tree, "usr/sbin/policy-rc.d"));
        await sh(["sh", "-c", `rm -rf '${tree}'/var/lib/apt/lists/* '${tree}'/var/cache/apt/*.bin`]);
        await step(`tar rootfs ${name}`, () =>
          sh(["sh", "-c",
            `tar --numeric-owner --xattrs --xattrs-include='*' -C '${tree}' -cf - . | zstd -q -T0 -3 -o '${tmp}/rootfs.tar.zst'`]),
        );
      });
      renameSync(join(tmp, "rootfs.tar.zst"), file);
      return file;
    } finally {
      Bun.spawnSync(["rm", "-rf", tmp]);
    }
  });
}

// ---------------------------------------------------------------- configure

async function configureTree(root: string, r: ImageRecipe, rootUuid: string, rootFs: string, bootUuid?: string) {
  const w = (p: string, s: string, mode = 0o644) =>
    writeFile(join(root, p), s).then(() => chmod(join(root, p), mode));
  const opts = rootFs === "ext4" ? "errors=remount-ro" : "defaults";
  let fstab = `# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=${rootUuid} / ${rootFs} ${opts} 0 1\n`;
  if (bootUuid) fstab += `UUID=${bootUuid} /boot ext4 defaults 0 2\n`;
  await w("etc/fstab", fstab);
  await w("etc/hostname", "template\n");
  await w("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n::1\tlocalhost ip6-localhost ip6-loopback\n");
  await w("etc/machine-id", `${randomUUID().replaceAll("-", "")}\n`, 0o444);
  await rm(join(root, "var/lib/dbus/machine-id"), { force: true });
  if ((r.network ?? "ifupdown") === "ifupdown") {
    await w("etc/network/interfaces",
      "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n");
  } else {
    // networkd (netplan's backend) as a cloud image has it: enabled, nothing configured
    await sh(["chroot", root, "systemctl", "enable", "systemd-networkd.service"]);
    if (r.network === "netplan") await mkdir(join(root, "etc/netplan"), { recursive: true });
  }
  // serial console login (the getty generator also starts it for console=ttyS0)
  const wants = join(root, "etc/systemd/system/getty.target.wants");
  await mkdir(wants, { recursive: true });
  await rm(join(wants, "serial-getty@ttyS0.service"), { force: true });
  await symlink("/lib/systemd/system/serial-getty@.service", join(wants, "serial-getty@ttyS0.service"));

  // ssh host keys: the template's own (openssh-server's postinst made them)
  const keys = (await readdir(join(root, "etc/ssh"))).filter((n) => /^ssh_host_.*_key$/.test(n));
  if (keys.length === 0) await sh(["chroot", root, "ssh-keygen", "-A"]);

  for (const u of r.users ?? []) {
    await sh(["chroot", root, "useradd", "-m", "-U", "-s", "/bin/bash", u]);
  }
  // root: locked unless the recipe sets a test password (hashed via stdin, never argv)
  const rootHash = r.rootPassword
    ? (await sh(["mkpasswd", "-m", "sha-512", "--stdin"], { stdin: r.rootPassword })).trim()
    : "*";
  const shadowPath = join(root, "etc/shadow");
  const shadow = (await readFile(shadowPath, "utf8"))
    .split("\n")
    .map((l) => (l.startsWith("root:") ? l.replace(/^root:[^:]*:/, `root:${rootHash}:`) : l))
    .join("\n");
  await writeFile(shadowPath, shadow);
}

// ---------------------------------------------------------------- disk assembly

interface Part { fs: "ext4" | "xfs" | "btrfs"; uuid: string; label: string; sizeMiB: number; src: string }

async function makeFs(p: Part, img: string, mnt: string): Promise<void> {
  await sh(["truncate", "-s", `${p.sizeMiB}M`, img]);
  if (p.fs === "ext4") {
    await sh(["mkfs.ext4", "-q", "-F", "-U", p.uuid, "-L", p.label, "-d", p.src, img]);
  } else if (p.fs === "btrfs") {
    await sh(["mkfs.btrfs", "-q", "-f", "-U", p.uuid, "-L", p.label, "--rootdir", p.src, img]);
  } else {
    // no protofile generator in bookworm's xfsprogs: loop mount and copy
    await sh(["mkfs.xfs", "-q", "-f", "-m", `uuid=${p.uuid}`, "-L", p.label, img]);
    await mkdir(mnt, { recursive: true });
    await sh(["mount", "-o", "loop", img, mnt]);
    try {
      await sh(["sh", "-c", `tar --numeric-owner --xattrs --xattrs-include='*' -C '${p.src}' -cf - . | tar --numeric-owner --xattrs --xattrs-include='*' -C '${mnt}' -xpf -`]);
    } finally {
      await sh(["umount", mnt]);
    }
  }
}

async function build(r: ImageRecipe, key: string, dest: string): Promise<DebianImage> {
  const n = normalize(r);
  const rootfsTar = await baseRootfs(r);
  const tmp = join(cacheDir(), `.tmp-${key}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const t0 = performance.now();
  try {
    return await withTmpfs(join(tmp, "work"), () => assemble(r, n, key, dest, rootfsTar, tmp, t0));
  } catch (e) {
    Bun.spawnSync(["umount", "-l", join(tmp, "work", "mnt")]);
    Bun.spawnSync(["umount", "-l", join(tmp, "work")]);
    Bun.spawnSync(["rm", "-rf", tmp]);
    throw e;
  }
}

async function assemble(
  r: ImageRecipe, n: ReturnType<typeof normalize>, key: string, dest: string,
  rootfsTar: string, tmp: string, t0: number,
): Promise<DebianImage> {
  {
    const work = join(tmp, "work");
    const tree = join(work, "root");
    await mkdir(tree);
    await step("unpack rootfs", () =>
      sh(["sh", "-c", `zstd -q -dc '${rootfsTar}' | tar --numeric-owner --xattrs --xattrs-include='*' -C '${tree}' -xpf -`]),
    );
    if (!n.bootable) {
      await step("purge kernel (not bootable)", () =>
        sh(["chroot", tree, "sh", "-c",
          "dpkg --purge linux-image-amd64 $(dpkg-query -W -f='${Package}\\n' 'linux-image-[0-9]*')"]),
      );
    }
    const rootUuid = randomUUID();
    const bootUuid = n.separateBoot ? randomUUID() : undefined;
    await step("configure tree", () => configureTree(tree, r, rootUuid, n.rootFs, bootUuid));

    let kernel: string | undefined;
    let initrd: string | undefined;
    if (n.bootable) {
      const boot = await readdir(join(tree, "boot"));
      const vmlinuz = boot.filter((f) => f.startsWith("vmlinuz-")).sort().pop();
      const ird = boot.filter((f) => f.startsWith("initrd.img-")).sort().pop();
      if (!vmlinuz || !ird) throw new Error(`bootable image without kernel/initrd in /boot: ${boot.join(" ")}`);
      await step("copy kernel + initrd", () =>
        sh(["cp", join(tree, "boot", vmlinuz), join(tree, "boot", ird), tmp]).then(() => {
          renameSync(join(tmp, vmlinuz), join(tmp, "vmlinuz"));
          renameSync(join(tmp, ird), join(tmp, "initrd.img"));
        }),
      );
      kernel = join(dest, "vmlinuz");
      initrd = join(dest, "initrd.img");
    }

    // partitions: 1 MiB alignment, 1 MiB spare at the end (GPT backup header)
    const parts: Part[] = [];
    let bootTree: string | undefined;
    if (bootUuid) {
      bootTree = join(work, "boottree");
      await mkdir(bootTree);
      await sh(["sh", "-c", `cd '${tree}/boot' && tar -cf - . | tar -C '${bootTree}' -xpf - && find . -mindepth 1 -delete`]);
      parts.push({ fs: "ext4", uuid: bootUuid, label: "boot", sizeMiB: 256, src: bootTree });
    }
    const rootSize = n.sizeMiB - 2 - (bootUuid ? 256 : 0);
    if (rootSize < 512) throw new Error(`sizeMiB ${n.sizeMiB} too small`);
    parts.push({ fs: n.rootFs, uuid: rootUuid, label: "root", sizeMiB: rootSize, src: tree });

    const disk = join(tmp, "disk.raw");
    await sh(["truncate", "-s", `${n.sizeMiB}M`, disk]);
    let start = 1;
    const script = [`label: ${n.label === "msdos" ? "dos" : "gpt"}`, "unit: sectors", ""];
    for (const p of parts) {
      const boot = n.label === "msdos" && p === parts[0] ? ", bootable" : "";
      script.push(`start=${start * 2048}, size=${p.sizeMiB * 2048}, type=L${boot}`);
      start += p.sizeMiB;
    }
    await step(`sfdisk ${n.label}`, () => sh(["sfdisk", "--quiet", disk], { stdin: script.join("\n") + "\n" }));

    start = 1;
    for (const [i, p] of parts.entries()) {
      const img = join(work, `part${i + 1}.img`);
      await step(`mkfs.${p.fs} + fill ${p.label} (${p.sizeMiB} MiB)`, () => makeFs(p, img, join(work, "mnt")));
      await step(`splice ${p.label}`, () =>
        sh(["dd", `if=${img}`, `of=${disk}`, "bs=1M", `seek=${start}`, "conv=notrunc,sparse", "status=none"]),
      );
      await rm(img);
      start += p.sizeMiB;
    }

    const img: DebianImage = {
      path: join(dest, "disk.raw"),
      kernel,
      initrd,
      rootUuid,
      rootPartition: parts.length,
      bootUuid,
      bootPartition: bootUuid ? 1 : undefined,
      recipeKey: key,
    };
    await writeFile(join(tmp, "meta.json"), JSON.stringify({ ...img, recipe: { ...n, rootPassword: undefined } }, null, 2));
    await chmod(disk, 0o444);
    Bun.spawnSync(["umount", "-l", work]);
    await rm(work, { recursive: true, force: true });
    renameSync(tmp, dest);
    log(`built ${key} in ${((performance.now() - t0) / 1000).toFixed(1)} s (after rootfs)`);
    return img;
  }
}

async function readCached(dest: string): Promise<DebianImage | undefined> {
  const meta = join(dest, "meta.json");
  if (!existsSync(meta)) return undefined;
  const m = JSON.parse(await readFile(meta, "utf8")) as DebianImage & { recipe?: unknown };
  delete m.recipe;
  return m;
}

/** Build (or take from the cache) a real Debian disk image for the recipe. */
export async function debianImage(r: ImageRecipe): Promise<DebianImage> {
  const minMiB = 512 + 2 + (r.separateBoot ? 256 : 0);
  if ((r.sizeMiB ?? 2048) < minMiB) throw new Error(`sizeMiB ${r.sizeMiB} too small (at least ${minMiB})`);
  const key = recipeKey(r);
  const dest = join(cacheDir(), key);
  const hit = await readCached(dest);
  if (hit) return hit;
  if (process.getuid?.() !== 0) throw new Error("building test images needs root (debootstrap, mkfs, chroot)");
  mkdirSync(cacheDir(), { recursive: true });
  sweepTemp();
  return withLock(key, async () => {
    const again = await readCached(dest);
    if (again) return again;
    if (existsSync(dest)) Bun.spawnSync(["rm", "-rf", dest]); // not ours: no meta.json
    return build(r, key, dest);
  });
}

// ---------------------------------------------------------------- synthetic roots

const SYNTH: Record<"redhat" | "suse" | "arch", { osRelease: string; net: Record<string, string> }> = {
  redhat: {
    osRelease: 'NAME="Rocky Linux"\nVERSION="9.3 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\n',
    net: {
      "etc/sysconfig/network": "NETWORKING=yes\n",
      "etc/sysconfig/network-scripts/ifcfg-eth0": 'DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\n',
      "etc/NetworkManager/system-connections/.keep": "",
      "etc/redhat-release": "Rocky Linux release 9.3 (Blue Onyx)\n",
    },
  },
  suse: {
    osRelease: 'NAME="openSUSE Leap"\nVERSION="15.5"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\nVERSION_ID="15.5"\nPRETTY_NAME="openSUSE Leap 15.5"\n',
    net: {
      "etc/sysconfig/network/config": 'NETCONFIG_MODULES_ORDER="dns-resolver dns-bind ntp-runtime"\n',
      "etc/sysconfig/network/ifcfg-eth0": "BOOTPROTO='dhcp'\nSTARTMODE='auto'\n",
      "etc/SUSE-brand": "openSUSE\nVERSION = 15.5\n",
    },
  },
  arch: {
    osRelease: 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
    net: {
      "etc/systemd/network/20-wired.network": "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
      "etc/arch-release": "",
    },
  },
};

/** The files every helper task needs in a files-only Debian-like root (helper and hostile-image tests). */
export const MINIMAL_ROOT_FILES: Readonly<Record<string, string>> = {
  "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
  "etc/group": "root:x:0:\n",
  "etc/shadow": "root:*:19000:0:99999:7:::\n",
  "etc/hostname": "template\n",
  "etc/hosts": "127.0.0.1 localhost\n127.0.1.1 template\n",
  "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
  "etc/os-release": "ID=debian\n",
};

/**
 * A files-only fake root of another distro family (no binaries), for unit tests
 * of per-distro logic: os-release, passwd/shadow/group, sshd_config, network dirs.
 */
export async function syntheticRoot(kind: "redhat" | "suse" | "arch", dir: string): Promise<void> {
  const s = SYNTH[kind];
  const files: Record<string, string> = {
    "etc/os-release": s.osRelease,
    "etc/hostname": "template\n",
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:Nobody:/:/sbin/nologin\nuser:x:1000:1000::/home/user:/bin/bash\n",
    "etc/shadow": "root:*:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\nuser:!!:19700:0:99999:7:::\n",
    "etc/group": `root:x:0:\n${kind === "arch" ? "wheel" : "wheel"}:x:10:user\nnobody:x:65534:\nuser:x:1000:\n`,
    "etc/ssh/sshd_config": "#PermitRootLogin prohibit-password\nPasswordAuthentication yes\nSubsystem sftp /usr/libexec/openssh/sftp-server\n",
    "etc/fstab": "UUID=00000000-0000-4000-8000-000000000001 / xfs defaults 0 0\n",
    "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
    ...s.net,
  };
  for (const [p, content] of Object.entries(files)) {
    const full = join(dir, p);
    await mkdir(join(full, ".."), { recursive: true });
    if (!p.endsWith("/.keep")) await writeFile(full, content);
  }
  await chmod(join(dir, "etc/shadow"), 0o600);
  for (const d of ["root", "home/user", "tmp", "var/log"]) await mkdir(join(dir, d), { recursive: true });
}

/**
 * A file derived from a cached image (a cut-out filesystem, a qcow2 of it…),
 * built once into cacheDir()/<tag>-<recipeKey>/<name> and renamed into place
 * whole, so that an interrupted build leaves nothing.
 */
export function derivedArtefact(image: DebianImage, tag: string, name: string, build: (out: string) => void): string {
  const dir = join(cacheDir(), `${tag}-${image.recipeKey}`);
  mkdirSync(dir, { recursive: true });
  const f = join(dir, name);
  if (existsSync(f)) return f;
  const part = `${f}.tmp-${process.pid}`;
  const t0 = performance.now();
  build(part);
  renameSync(part, f);
  log(`built ${tag}/${name} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${statSync(f).size} bytes)`);
  return f;
}

/**
 * Deploy real Debian images with `create` onto disks LARGER than the image,
 * then BOOT the result under qemu (TCG) and log in on the serial console with
 * the injected password, as root and as a USERS user; check from inside the
 * running guest: hostname, grown root (findmnt/df), authorized_keys, fresh
 * host keys and machine-id, swap, and the static address on the interface
 * whose MAC is the NIC's.
 *
 * Every run (CI too): bookworm msdos ext4 (+ swap), trixie GPT btrfs (+ swap,
 * yescrypt), bullseye msdos xfs with a separate /boot, bookworm GPT ext4 with a
 * separate /boot (+ swap), this one with HELPER_RESUME=off: its helper boots
 * cold, the others resume the saved helper VM. SNF_TEST_QUICK=1 keeps only the first two;
 * SNF_TEST_SUITES=a,b limits the run to those suites. Each boot costs ~40–60 s
 * under TCG.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bootAndLogin } from "../lib/boot.ts";
import { runCreate, placeImage } from "../lib/deploy.ts";
import { debianImage, derivedArtefact, type DebianImage, type ImageRecipe, type Suite } from "../lib/images.ts";
import { mountDisk } from "../lib/inspect.ts";

const PASSWORD = "b00t-Test-pw";
const MAC = "aa:00:00:5e:00:53";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@snf-image";
const DISK_GIB = 4;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join("/var/tmp", "snf-boot-test-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Case {
  name: string;
  recipe: ImageRecipe;
  /** SWAP property (partition carved after the last one), or none. */
  swap?: string;
  /** PASSWD_HASHING_METHOD property, and the crypt prefix the shadow entry must then have. */
  hash?: { method: string; prefix: string };
  full?: boolean;
  /** Deploy from a zlib-compressed qcow2 of the image (made by qemu-img) instead of the raw diskdump. */
  qcow2?: boolean;
  /** HELPER_RESUME=off: this case's helper VM boots cold (the others resume a saved state when there is one). */
  cold?: boolean;
}

const CASES: Case[] = [
  { name: "bookworm msdos ext4", recipe: { suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true, users: ["alice"] }, swap: "2:256" },
  { name: "trixie gpt btrfs from qcow2", recipe: { suite: "trixie", label: "gpt", rootFs: "btrfs", bootable: true, users: ["alice"] }, swap: "2:128", hash: { method: "yescrypt", prefix: "$y$" }, qcow2: true },
  { name: "bullseye msdos xfs /boot", recipe: { suite: "bullseye", label: "msdos", rootFs: "xfs", separateBoot: true, bootable: true, users: ["alice"] }, full: true },
  { name: "bookworm gpt ext4 /boot", recipe: { suite: "bookworm", label: "gpt", rootFs: "ext4", separateBoot: true, bootable: true, users: ["alice"] }, swap: "3:64", full: true, cold: true },
];
const full = process.env.SNF_TEST_QUICK !== "1";
const only = process.env.SNF_TEST_SUITES?.split(",") as Suite[] | undefined;
const selected = CASES.filter((c) => (only ? only.includes(c.recipe.suite) : full || !c.full));

function templateFacts(img: DebianImage): { hostKeys: string; machineId: string } {
  const m = mountDisk(img.path, img.rootPartition);
  try {
    const keys = m.list("/etc/ssh").filter((f) => /^ssh_host_.*_key\.pub$/.test(f)).sort();
    return { hostKeys: keys.map((k) => m.read(`/etc/ssh/${k}`)).join(""), machineId: m.read("/etc/machine-id").trim() };
  } finally {
    m.close();
  }
}

/** A compressed qcow2 of the image, as cloud images are published (cached next to it). */
function qcow2Of(img: DebianImage): string {
  return derivedArtefact(img, "boot-qcow2", "img.qcow2", (out) => {
    const p = Bun.spawnSync(["qemu-img", "convert", "-c", "-O", "qcow2", img.path, out], { stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`qemu-img convert: ${p.stderr.toString().trim()}`);
  });
}

const timings: string[] = [];
afterAll(() => {
  if (timings.length) console.log(`boot matrix timings:\n${timings.join("\n")}`);
});

describe.each(selected)("deployed $name guest boots", (c) => {
  test(
    "root and a USERS user log in with the password; hostname, grown root, keys, fresh identity, swap, static address on the MAC's interface",
    async () => {
      const t0 = performance.now();
      const img = await debianImage(c.recipe);
      const template = templateFacts(img);
      const slug = c.name.replace(/[^a-z0-9]+/g, "-");
      const instance = `${slug.replace(/-+$/, "")}.example.org`.slice(0, 63);
      const imageDir = join(work, slug);
      mkdirSync(imageDir, { recursive: true });
      placeImage(c.qcow2 ? qcow2Of(img) : img.path, join(imageDir, "img"));
      const disk = join(work, `${slug}.disk`);
      Bun.spawnSync(["truncate", "-s", `${DISK_GIB}G`, disk]);
      const props: Record<string, string> = { USERS: "root alice" };
      if (c.swap) props.SWAP = c.swap;
      if (c.hash) props.PASSWD_HASHING_METHOD = c.hash.method;
      const r = await runCreate({
        disks: [disk],
        instance,
        imageDir,
        nics: [{ mac: MAC, ip: "10.9.8.7", network: { subnet: "10.9.8.0/24", gateway: "10.9.8.1" } }],
        osp: { img_id: "img", img_format: c.qcow2 ? "qcow2" : "diskdump", img_passwd: PASSWORD, inst_properties: JSON.stringify(props), auth_keys: KEY },
        config: c.cold ? { HELPER_RESUME: "off" } : {},
      });
      if (r.code !== 0) console.log(r.output);
      expect(r.code).toBe(0);
      expect(r.output).toMatch(c.cold ? /helper VM booted; disks attached/ : /helper VM (booted|resumed from its saved state); disks attached/);
      const renderer = /(ifupdown|systemd-networkd|netplan|NetworkManager|ifcfg|cloud-init): wrote/.exec(r.output)?.[1];
      expect(renderer).toBeDefined();
      const tDeploy = performance.now();

      const s = await bootAndLogin({ disk, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid, user: "root", password: PASSWORD, mac: MAC, snapshot: false });
      const tRoot = performance.now();
      try {
        expect((await s.run("hostname")).trim()).toBe(instance);
        // the guest's own PAM accepted this hash at login; check it is the method asked for
        expect((await s.run("cut -d: -f2 /etc/shadow | head -1")).trim().startsWith(c.hash?.prefix ?? "$6$")).toBe(true);
        // grown root: the filesystem fills the disk minus /boot, swap and alignment
        const [src, fstype] = (await s.run("findmnt -n -o SOURCE,FSTYPE /")).trim().split(/\s+/);
        expect(fstype).toBe(c.recipe.rootFs);
        const sizeKiB = Number((await s.run("df -k --output=size / | tail -1")).trim());
        const imageRootMiB = 2048 - 2 - (c.recipe.separateBoot ? 256 : 0);
        expect(sizeKiB / 1024).toBeGreaterThan(imageRootMiB + 1024);
        expect(sizeKiB / 1024).toBeGreaterThan(DISK_GIB * 1024 - 256 - 300 - Number(c.swap?.split(":")[1] ?? 0));
        const partMiB = Number((await s.run(`lsblk -bno SIZE ${src}`)).trim()) / 2 ** 20;
        expect(partMiB).toBeGreaterThan(DISK_GIB * 1024 - 300 - Number(c.swap?.split(":")[1] ?? 0) - (c.recipe.separateBoot ? 256 : 0));
        if (c.recipe.separateBoot) expect((await s.run("findmnt -n -o TARGET /boot")).trim()).toBe("/boot");
        // keys and identity
        expect(await s.run("cat /root/.ssh/authorized_keys")).toContain(KEY);
        const hostKeys = await s.run("cat $(ls /etc/ssh/ssh_host_*_key.pub | sort)");
        expect(hostKeys).toContain("ssh-ed25519 ");
        for (const line of template.hostKeys.split("\n").filter(Boolean)) expect(hostKeys).not.toContain(line.split(" ")[1]!);
        expect((await s.run("stat -c %a /etc/ssh/ssh_host_ed25519_key")).trim()).toBe("600");
        const machineId = (await s.run("cat /etc/machine-id")).trim();
        expect(machineId).toMatch(/^[0-9a-f]{32}$/);
        expect(machineId).not.toBe(template.machineId);
        // swap
        const swaps = await s.run("tail -n +2 /proc/swaps");
        if (c.swap) {
          expect(swaps).toMatch(/partition/);
          const swapKiB = Number(swaps.trim().split(/\s+/)[2]);
          expect(swapKiB).toBeGreaterThan(Number(c.swap.split(":")[1]) * 1024 * 0.9);
        } else {
          expect(swaps.trim()).toBe("");
        }
        // network: the interface whose MAC is the NIC's has the static address (ifup may still be running)
        const ifname = (await s.run(`for i in /sys/class/net/*; do [ "$(cat $i/address)" = "${MAC}" ] && basename $i; done; true`)).trim();
        expect(ifname).not.toBe("");
        const addr = await s.run(`for n in $(seq 60); do ip -o -4 addr show dev ${ifname} | grep -q 10.9.8.7/24 && break; sleep 1; done; ip -o -4 addr show dev ${ifname}`, 90);
        expect(addr).toContain("inet 10.9.8.7/24");
        expect(await s.run("ip -4 route show default")).toContain(`default via 10.9.8.1 dev ${ifname}`);
        if (renderer === "ifupdown") expect(await s.run("cat /etc/network/interfaces")).toContain(`auto mac/${MAC}/=`);
        console.log(`${c.name}: renderer ${renderer}, interface ${ifname}, root ${src} ${fstype} ${Math.round(sizeKiB / 1024)} MiB`);
      } finally {
        await s.close();
      }
      const tRootDone = performance.now();
      const a = await bootAndLogin({ disk, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid, user: "alice", password: PASSWORD, mac: MAC, snapshot: true });
      const tAlice = performance.now();
      try {
        expect((await a.run("id -un")).trim()).toBe("alice");
        expect(await a.run("cat ~/.ssh/authorized_keys")).toContain(KEY);
        expect((await a.run("stat -c '%U %a' ~/.ssh ~/.ssh/authorized_keys")).trim().split("\n")).toEqual(["alice 700", "alice 600"]);
      } finally {
        await a.close();
      }
      const s_ = (x: number) => `${(x / 1000).toFixed(0)} s`;
      timings.push(
        `${c.name}: image ${s_(tDeploy - t0 - r.ms)}, create ${s_(r.ms)}, root boot+login ${s_(tRoot - tDeploy)}, ` +
          `alice boot+login ${s_(tAlice - tRootDone)}, total ${s_(performance.now() - t0)}; renderer ${renderer}`,
      );
    },
    1_800_000,
  );
});

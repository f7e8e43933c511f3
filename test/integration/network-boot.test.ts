/**
 * Network formats other than ifupdown, proven by booting: deploy a bootable
 * Debian bookworm image that has NO ifupdown — one running systemd-networkd
 * only, one with netplan.io (networkd backend) — with a static IPv4 NIC,
 * boot it under qemu (TCG) and check from inside the guest that the
 * interface whose MAC is the NIC's has 10.9.8.7/24 and the default route
 * goes via 10.9.8.1. Each case: ~80 s debootstrap once (cached), then
 * ~30 s create + ~40–60 s boot.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bootAndLogin } from "../lib/boot.ts";
import { placeImage, runCreate } from "../lib/deploy.ts";
import { debianImage, type ImageRecipe } from "../lib/images.ts";
import { mountDisk } from "../lib/inspect.ts";

const PASSWORD = "n3t-Boot-pw";
const MAC = "aa:00:00:5e:00:54";
let work: string;

beforeAll(() => {
  work = mkdtempSync(join("/var/tmp", "snf-netboot-test-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Case {
  name: string;
  recipe: ImageRecipe;
  renderer: string;
  /** The file the renderer must have written (checked on the deployed disk). */
  file: string;
  /** The .network file networkd reports it configured the interface from. */
  networkFile: RegExp;
}

const CASES: Case[] = [
  {
    name: "systemd-networkd",
    recipe: { suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true, network: "networkd" },
    renderer: "systemd-networkd",
    file: "/etc/systemd/network/10-snf-image-eth0.network",
    networkFile: /^NETWORK_FILE=\/etc\/systemd\/network\/10-snf-image-eth0\.network$/m,
  },
  {
    name: "netplan",
    recipe: { suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true, network: "netplan" },
    renderer: "netplan",
    file: "/etc/netplan/50-snf-image.yaml",
    // netplan's generator turns the YAML into networkd units under /run
    networkFile: /^NETWORK_FILE=\/run\/systemd\/network\/10-netplan-[\w-]+\.network$/m,
  },
];

const timings: string[] = [];
afterAll(() => {
  if (timings.length) console.log(`network boot timings:\n${timings.join("\n")}`);
});

describe.each(CASES)("$name guest without ifupdown", (c) => {
  test(
    "the static address and default route come up on the interface with the NIC's MAC",
    async () => {
      const t0 = performance.now();
      const img = await debianImage(c.recipe);
      const tImage = performance.now();
      const imageDir = join(work, c.name);
      mkdirSync(imageDir, { recursive: true });
      placeImage(img.path, join(imageDir, "img"));
      const disk = join(work, `${c.name}.disk`);
      Bun.spawnSync(["truncate", "-s", "3G", disk]);
      const r = await runCreate({
        disks: [disk],
        instance: `${c.name}.example.org`,
        imageDir,
        nics: [{ mac: MAC, ip: "10.9.8.7", network: { subnet: "10.9.8.0/24", gateway: "10.9.8.1" } }],
        osp: { img_id: "img", img_format: "diskdump", img_passwd: PASSWORD, inst_properties: "{}" },
      });
      if (r.code !== 0) console.log(r.output);
      expect(r.code).toBe(0);
      expect(/(ifupdown|systemd-networkd|netplan|NetworkManager|ifcfg|wicked|cloud-init): wrote/.exec(r.output)?.[1]).toBe(c.renderer);

      // the image really has no ifupdown, and the renderer's file is there
      const m = mountDisk(disk, img.rootPartition);
      try {
        expect(m.exists("/sbin/ifup") || m.exists("/usr/sbin/ifup")).toBe(false);
        expect(m.read(c.file)).toContain(MAC);
      } finally {
        m.close();
      }

      const tBoot = performance.now();
      const s = await bootAndLogin({ disk, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid, user: "root", password: PASSWORD, mac: MAC, snapshot: true });
      let ifname = "";
      try {
        ifname = (await s.run(`for i in /sys/class/net/*; do [ "$(cat $i/address)" = "${MAC}" ] && basename $i; done; true`)).trim();
        expect(ifname).not.toBe("");
        const addr = await s.run(
          `for n in $(seq 90); do ip -o -4 addr show dev ${ifname} | grep -q 10.9.8.7/24 && ip -4 route show default | grep -q 10.9.8.1 && break; sleep 1; done; ip -o -4 addr`,
          120,
        );
        expect(addr).toMatch(new RegExp(`^\\d+: ${ifname}\\s+inet 10\\.9\\.8\\.7/24 `, "m"));
        expect(await s.run("ip -4 route show default")).toContain(`default via 10.9.8.1 dev ${ifname}`);
        // it is networkd that configured it, from our file (netplan: from the unit generated from ours);
        // no D-Bus in these minimal images, so networkd's state file instead of networkctl
        expect((await s.run("systemctl is-active systemd-networkd")).trim()).toBe("active");
        const ifindex = (await s.run(`cat /sys/class/net/${ifname}/ifindex`)).trim();
        const state = await s.run(`cat /run/systemd/netif/links/${ifindex}`);
        expect(state).toContain("ADMIN_STATE=configured");
        expect(state).toMatch(c.networkFile);
      } catch (e) {
        console.log(`console transcript (${c.name}):\n${s.transcript().slice(-6000)}`);
        throw e;
      } finally {
        await s.close();
      }
      const sec = (x: number) => `${(x / 1000).toFixed(0)} s`;
      timings.push(`${c.name}: image ${sec(tImage - t0)}, create ${sec(r.ms)}, boot+checks ${sec(performance.now() - tBoot)}, interface ${ifname}`);
    },
    900_000,
  );
});

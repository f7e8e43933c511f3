/**
 * Deploy a bootable Debian image with `create`, then BOOT the result under
 * qemu (TCG) and log in on the serial console with the injected password, as
 * root and as a USERS user; check from inside the running guest.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bootAndLogin } from "../lib/boot.ts";
import { runCreate, placeImage } from "../lib/deploy.ts";
import { debianImage, type DebianImage, type Suite } from "../lib/images.ts";
import { mountDisk } from "../lib/inspect.ts";

const PASSWORD = "b00t-Test-pw";
const MAC = "aa:00:00:5e:00:53";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ci@snf-image";
let work: string;

beforeAll(() => {
  work = mkdtempSync(join("/var/tmp", "snf-boot-test-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function templateFacts(img: DebianImage): { hostKey: string; machineId: string } {
  const m = mountDisk(img.path, img.rootPartition);
  try {
    return { hostKey: m.read("/etc/ssh/ssh_host_ed25519_key.pub"), machineId: m.read("/etc/machine-id").trim() };
  } finally {
    m.close();
  }
}

const suites: Suite[] = (process.env.SNF_TEST_SUITES ?? "bookworm").split(",") as Suite[];

describe.each(suites)("deployed %s guest boots", (suite) => {
  test(
    "root and a USERS user log in with the password; hostname, grown disk, key, fresh identity",
    async () => {
      const img = await debianImage({ suite, label: "msdos", rootFs: "ext4", bootable: true, users: ["alice"] });
      const template = templateFacts(img);
      const imageDir = join(work, suite);
      mkdirSync(imageDir, { recursive: true });
      placeImage(img.path, join(imageDir, "img"));
      const disk = join(work, `${suite}.disk`);
      Bun.spawnSync(["truncate", "-s", "4G", disk]);
      const r = await runCreate({
        disks: [disk],
        instance: `${suite}-guest`,
        imageDir,
        nics: [{ mac: MAC, ip: "10.9.8.7", network: { subnet: "10.9.8.0/24", gateway: "10.9.8.1" } }],
        osp: {
          img_id: "img",
          img_format: "diskdump",
          img_passwd: PASSWORD,
          inst_properties: JSON.stringify({ USERS: "root alice" }),
          auth_keys: KEY,
        },
      });
      console.log(r.output.split("\n").filter((l) => !l.startsWith("HELPER:")).join("\n"));
      expect(r.code).toBe(0);

      const s = await bootAndLogin({ disk, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid, user: "root", password: PASSWORD, mac: MAC, snapshot: false });
      try {
        expect((await s.run("hostname")).trim()).toBe(`${suite}-guest`);
        const sizeKiB = Number((await s.run("df -k --output=size / | tail -1")).trim());
        expect(sizeKiB).toBeGreaterThan(3.5 * 1024 * 1024);
        expect(await s.run("cat /root/.ssh/authorized_keys")).toContain(KEY);
        expect(await s.run("cat /etc/ssh/ssh_host_ed25519_key.pub")).not.toBe(template.hostKey);
        expect((await s.run("cat /etc/machine-id")).trim()).not.toBe(template.machineId);
        const addr = await s.run("ip -o -4 addr show");
        expect(addr).toContain("10.9.8.7/24");
      } finally {
        await s.close();
      }
      const a = await bootAndLogin({ disk, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid, user: "alice", password: PASSWORD, mac: MAC, snapshot: true });
      try {
        expect((await a.run("id -un")).trim()).toBe("alice");
        expect(await a.run("cat ~/.ssh/authorized_keys")).toContain(KEY);
      } finally {
        await a.close();
      }
    },
    1_800_000,
  );
});

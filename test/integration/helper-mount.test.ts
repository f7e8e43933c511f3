/**
 * The helper's skeleton and core tasks on a real loop device (root only):
 * OS/root detection with read-only probing, MountImage with fstab-by-UUID,
 * the identity tasks, UmountImage, and the failure path (nothing stays mounted).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROTOCOL_VERSION, encodeParams, type HelperParamsInput } from "../../src/protocol.ts";
import { helperMain } from "../../helper/main.ts";
import { MINIMAL_ROOT_FILES } from "../lib/images.ts";
import { mountsUnder } from "../../helper/lib/mount.ts";
import { verifyPassword } from "../../helper/lib/crypt.ts";
import { task as MountImage } from "../../helper/tasks/MountImage.ts";
import { task as AssignHostname } from "../../helper/tasks/AssignHostname.ts";
import { task as ChangeMachineId } from "../../helper/tasks/ChangeMachineId.ts";
import { task as ChangePassword } from "../../helper/tasks/ChangePassword.ts";
import { task as AuthorizedKeys } from "../../helper/tasks/AuthorizedKeys.ts";
import { task as DeleteSSHKeys } from "../../helper/tasks/DeleteSSHKeys.ts";
import { task as EnforcePersonality } from "../../helper/tasks/EnforcePersonality.ts";
import { task as UmountImage } from "../../helper/tasks/UmountImage.ts";

const CORE = [MountImage, AssignHostname, ChangeMachineId, ChangePassword, AuthorizedKeys, DeleteSSHKeys, EnforcePersonality, UmountImage];
const isRoot = process.getuid?.() === 0;
const BOOT_UUID = "0b0b0b0b-1111-2222-3333-444444444444";
const ROOT_UUID = "f0f0f0f0-1111-2222-3333-444444444444";

let work: string;
const loops: string[] = [];

function sh(cmd: string[], input?: string): string {
  const r = Bun.spawnSync(cmd, { stdin: input === undefined ? "ignore" : Buffer.from(input), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

/** A 64 MiB msdos disk: p1 = /boot (ext4), p2 = root (ext4) with the given fstab. Returns the loop device. */
function makeDisk(name: string, fstab: string): string {
  const tree = path.join(work, `${name}-root`);
  const boot = path.join(work, `${name}-boot`);
  const files: Record<string, string> = {
    ...MINIMAL_ROOT_FILES,
    "etc/fstab": fstab,
    "etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\n",
    "etc/ssh/ssh_host_rsa_key": "OLD KEY\n",
  };
  for (const [p, t] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(tree, p)), { recursive: true });
    fs.writeFileSync(path.join(tree, p), t);
  }
  fs.mkdirSync(path.join(tree, "boot"));
  fs.mkdirSync(path.join(tree, "root"), { mode: 0o700 });
  fs.mkdirSync(path.join(boot, "grub"), { recursive: true });
  fs.writeFileSync(path.join(boot, "grub/grub.cfg"), "# grub\n");
  const img = path.join(work, `${name}.img`);
  fs.closeSync(fs.openSync(img, "w"));
  fs.truncateSync(img, 64 << 20);
  sh(["sfdisk", "-q", img], "label: dos\n,16M,83\n,,83\n");
  sh(["mke2fs", "-q", "-F", "-t", "ext4", "-U", BOOT_UUID, "-d", boot, "-E", `offset=${1 << 20}`, img, "16M"]);
  sh(["mke2fs", "-q", "-F", "-t", "ext4", "-U", ROOT_UUID, "-d", tree, "-E", `offset=${17 << 20}`, img, `${64 - 17}M`]);
  const dev = sh(["losetup", "-P", "--show", "-f", img]).trim();
  loops.push(dev);
  // losetup -P does not always scan here; partx -a does.
  if (!fs.existsSync(`${dev}p2`)) Bun.spawnSync(["partx", "-a", dev]);
  for (let i = 0; i < 100 && !fs.existsSync(`${dev}p2`); i++) Bun.sleepSync(20);
  return dev;
}

function catIn(part: string, file: string): string {
  return sh(["debugfs", "-R", `cat ${file}`, part]).toString();
}

function statIn(part: string, file: string): string {
  return sh(["debugfs", "-R", `stat ${file}`, part]);
}

function runEnv(dev: string, params: Partial<HelperParamsInput>) {
  const dir = fs.mkdtempSync(path.join(work, "run-"));
  fs.writeFileSync(
    path.join(dir, "params"),
    encodeParams({ protocol: PROTOCOL_VERSION, mode: "create", hostname: "vm1.example.org", imgFormat: "diskdump", properties: {}, disks: [{ index: 0, serial: "snf-disk0" }], now: 1_700_000_000, ...params }),
  );
  return {
    dir,
    env: {
      SNF_HELPER_PARAMS: path.join(dir, "params"),
      SNF_HELPER_RESULT: path.join(dir, "result"),
      SNF_HELPER_MONITOR: path.join(dir, "monitor"),
      SNF_HELPER_DISK: dev,
      SNF_HELPER_ROOT: path.join(dir, "mnt"),
      TMPDIR: dir,
    },
  };
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "snf-helper-it-"));
});
afterAll(() => {
  for (const l of loops) {
    Bun.spawnSync(["partx", "-d", l]);
    Bun.spawnSync(["losetup", "-d", l]);
  }
  fs.rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("helper on a loop device", () => {
  test(
    "detects linux on partition 2, mounts /boot by UUID, customizes, unmounts",
    async () => {
      const dev = makeDisk("good", `UUID=${ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID=${BOOT_UUID} /boot ext4 defaults 0 2\nproc /proc proc defaults 0 0\n`);
      const { dir, env } = runEnv(dev, {
        password: "S3cret-pw",
        authKeys: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake test@x\n",
        properties: { SSH_HOST_KEY_TYPES: "ed25519" },
        personality: [
          { path: "/boot/grub/custom.cfg", contents: Buffer.from("set timeout=1\n").toString("base64"), mode: 0o644 },
          { path: "/etc/motd", contents: Buffer.from("hi\n").toString("base64") },
        ],
      });
      const r = await helperMain(env, CORE);
      expect(r).toEqual({ ok: true });
      expect(fs.readFileSync(env.SNF_HELPER_RESULT, "utf8")).toBe("SUCCESS\n");
      expect(mountsUnder(env.SNF_HELPER_ROOT)).toEqual([]);
      expect(fs.readdirSync(dir).filter((n) => n.startsWith("snf-helper-"))).toEqual([]);
      const root = `${dev}p2`;
      const boot = `${dev}p1`;
      expect(catIn(root, "/etc/hostname")).toBe("vm1.example.org\n");
      expect(catIn(root, "/etc/hosts")).toContain("127.0.1.1\tvm1.example.org\tvm1");
      expect(catIn(root, "/etc/machine-id")).not.toContain("0123456789abcdef0123456789abcdef");
      const hash = catIn(root, "/etc/shadow").split(":")[1]!;
      expect(verifyPassword("S3cret-pw", hash)).toBe(true);
      expect(catIn(root, "/root/.ssh/authorized_keys")).toContain("AAAAIFake");
      expect(catIn(root, "/etc/ssh/ssh_host_ed25519_key")).toContain("OPENSSH PRIVATE KEY");
      expect(statIn(root, "/etc/ssh/ssh_host_rsa_key")).toBe(""); // removed (debugfs prints nothing on stdout)
      // the personality file went to the /boot filesystem, not to the root fs's /boot dir
      expect(catIn(boot, "/grub/custom.cfg")).toBe("set timeout=1\n");
      expect(catIn(root, "/etc/motd")).toBe("hi\n");
      const mon = fs.readFileSync(env.SNF_HELPER_MONITOR, "utf8");
      expect(mon).toContain("TASK_END:UmountImage:");
      expect(mon).not.toContain("S3cret-pw");
      expect(sh(["e2fsck", "-fn", root]).length).toBeGreaterThan(0);
    },
    60_000,
  );

  test(
    "rename mode changes only the hostname",
    async () => {
      const dev = makeDisk("rename", `UUID=${ROOT_UUID} / ext4 defaults 0 1\n`);
      const { env } = runEnv(dev, { mode: "rename", password: "nope", properties: { OSFAMILY: "linux", ROOT_PARTITION: "2" } });
      expect(await helperMain(env, CORE)).toEqual({ ok: true });
      expect(catIn(`${dev}p2`, "/etc/hostname")).toBe("vm1.example.org\n");
      expect(catIn(`${dev}p2`, "/etc/shadow")).toBe("root:*:19000:0:99999:7:::\n");
      const mon = fs.readFileSync(env.SNF_HELPER_MONITOR, "utf8");
      expect(mon).toContain("TASK_SKIP:ChangePassword:not run on rename");
    },
    60_000,
  );

  test(
    "an fstab entry by device path fails MountImage and leaves nothing mounted",
    async () => {
      const dev = makeDisk("bad", `UUID=${ROOT_UUID} / ext4 defaults 0 1\n/dev/sda1 /boot ext4 defaults 0 2\n`);
      const { env } = runEnv(dev, { properties: { OSFAMILY: "linux", ROOT_PARTITION: "2" } });
      const r = await helperMain(env, CORE);
      expect(r).toEqual({ ok: false, error: "MountImage: fstab entry /dev/sda1 for /boot is not by UUID or LABEL" });
      expect(fs.readFileSync(env.SNF_HELPER_RESULT, "utf8")).toBe("ERROR: MountImage: fstab entry /dev/sda1 for /boot is not by UUID or LABEL\n");
      expect(mountsUnder(env.SNF_HELPER_ROOT)).toEqual([]);
      expect(catIn(`${dev}p2`, "/etc/hostname")).toBe("template\n");
    },
    60_000,
  );
});

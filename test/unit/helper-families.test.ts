/**
 * Per-distro knowledge on files-only roots of other Linux families (Red Hat,
 * SUSE, Arch, from test/lib/images.ts syntheticRoot): the helper's own tasks
 * run directly against the tree, as they run against a mounted image inside
 * the helper VM. Distro detection, hostname file, password hash, network
 * files (which renderer the table picks), authorized_keys, machine-id.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { syntheticRoot } from "../lib/images.ts";
import { shadowHash, verifyCrypt } from "../lib/inspect.ts";
import { detectDistro } from "../../helper/os/distro.ts";
import { select } from "../../helper/net/renderers.ts";
import { task as assignHostname } from "../../helper/tasks/AssignHostname.ts";
import { task as changePassword } from "../../helper/tasks/ChangePassword.ts";
import { task as configureNetwork } from "../../helper/tasks/ConfigureNetwork.ts";
import { task as authorizedKeys } from "../../helper/tasks/AuthorizedKeys.ts";
import { task as changeMachineId } from "../../helper/tasks/ChangeMachineId.ts";
import { fakeCtx, modeOf, type FakeRoot } from "./helper-fixtures.ts";
import type { Nic } from "../../src/protocol.ts";

type Kind = "redhat" | "suse" | "arch";
const PASSWORD = "Fam1ly-pw";
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl fam@snf-image";
const NICS: Nic[] = [
  { index: 0, mac: "aa:00:00:5e:00:53", ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1", tags: [] } },
  { index: 1, mac: "aa:00:00:5e:00:54", ip: "10.1.0.5", network: { subnet: "10.1.0.0/16", tags: ["dhcp"] } },
];
const NET = { nics: NICS, dhcpTags: ["dhcp"] };

let roots: FakeRoot[] = [];
afterEach(() => {
  for (const r of roots) r.cleanup();
  roots = [];
});

/** A FakeRoot (for fakeCtx) whose tree is a syntheticRoot of `kind`. */
async function synth(kind: Kind, edit: (root: string) => void = () => {}): Promise<FakeRoot> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `snf-family-${kind}-`));
  const root = path.join(dir, "root");
  const scratch = path.join(dir, "scratch");
  fs.mkdirSync(root);
  fs.mkdirSync(scratch);
  await syntheticRoot(kind, root);
  fs.chownSync(path.join(root, "home/user"), 1000, 1000);
  edit(root);
  const fr: FakeRoot = {
    dir,
    root,
    scratch,
    write: (p, text, mode = 0o644) => {
      const host = path.join(root, p);
      fs.mkdirSync(path.dirname(host), { recursive: true });
      fs.writeFileSync(host, text);
      fs.chmodSync(host, mode);
    },
    read: (p) => fs.readFileSync(path.join(root, p), "utf8"),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
  roots.push(fr);
  return fr;
}

const at = (fr: FakeRoot, p: string) => path.join(fr.root, p);
const enable = (root: string, unit: string, target = "multi-user.target") => {
  const l = path.join(root, `etc/systemd/system/${target}.wants/${unit}`);
  fs.mkdirSync(path.dirname(l), { recursive: true });
  fs.symlinkSync(`/usr/lib/systemd/system/${unit}`, l);
};
const installNm = (root: string) => {
  fs.mkdirSync(path.join(root, "usr/sbin"), { recursive: true });
  fs.writeFileSync(path.join(root, "usr/sbin/NetworkManager"), "");
  enable(root, "NetworkManager.service");
};
const renderer = (fr: FakeRoot) => select(fr.root, { forceNetworkManager: false, cloudInit: false })?.name;

/** Run the per-distro tasks in table order, as the runner would. */
async function customize(fr: FakeRoot, kind: Kind) {
  const ctx = fakeCtx(
    fr,
    { password: PASSWORD, authKeys: `${KEY}\n`, properties: { USERS: "root user", PASSWD_HASHING_METHOD: "sha512" }, ...NET },
    { distro: detectDistro(fr.root) },
  );
  expect(ctx.os.distro).toBe(kind);
  for (const t of [assignHostname, changeMachineId, changePassword, authorizedKeys, configureNetwork]) await t.run(ctx);
  return ctx;
}

function commonChecks(fr: FakeRoot) {
  const shadow = fr.read("/etc/shadow");
  for (const u of ["root", "user"]) {
    const h = shadowHash(shadow, u)!;
    expect(h.startsWith("$6$")).toBe(true);
    expect(verifyCrypt(PASSWORD, h)).toBe(true);
  }
  expect(shadowHash(shadow, "nobody")).toBe("*");
  expect(modeOf(at(fr, "etc/shadow"))).toBe(0o600);
  expect(fr.read("/root/.ssh/authorized_keys")).toBe(`${KEY}\n`);
  const uk = fs.statSync(at(fr, "home/user/.ssh/authorized_keys"));
  expect([uk.uid, uk.mode & 0o777]).toEqual([1000, 0o600]);
  expect(fr.read("/etc/machine-id").trim()).toMatch(/^[0-9a-f]{32}$/);
  expect(fr.read("/etc/machine-id").trim()).not.toBe("0123456789abcdef0123456789abcdef");
}

describe("Red Hat family (Rocky 9 layout)", () => {
  test("ifcfg by HWADDR, /etc/hostname, sha512 for root and user, keys, machine-id", async () => {
    const fr = await synth("redhat");
    expect(renderer(fr)).toBe("ifcfg");
    const ctx = await customize(fr, "redhat");
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
    const eth0 = fr.read("/etc/sysconfig/network-scripts/ifcfg-eth0");
    for (const l of ["DEVICE=eth0", "HWADDR=aa:00:00:5e:00:53", "ONBOOT=yes", "BOOTPROTO=none", "IPADDR=192.0.2.10", "PREFIX=24", "GATEWAY=192.0.2.1"]) {
      expect(eth0.split("\n")).toContain(l);
    }
    expect(eth0).not.toContain("BOOTPROTO=dhcp");
    const eth1 = fr.read("/etc/sysconfig/network-scripts/ifcfg-eth1").split("\n");
    expect(eth1).toContain("HWADDR=aa:00:00:5e:00:54");
    expect(eth1).toContain("BOOTPROTO=dhcp");
    commonChecks(fr);
    expect(ctx.warnings).toEqual([]);
  });

  test("no /etc/hostname: HOSTNAME= in /etc/sysconfig/network, other lines kept", async () => {
    const fr = await synth("redhat", (root) => fs.rmSync(path.join(root, "etc/hostname")));
    await customize(fr, "redhat");
    expect(fr.read("/etc/sysconfig/network")).toBe("NETWORKING=yes\nHOSTNAME=vm1.example.org\n");
    expect(fs.existsSync(at(fr, "etc/hostname"))).toBe(false);
  });

  test("NetworkManager enabled (RHEL 9 default): keyfiles by MAC, 0600, ifcfg untouched", async () => {
    const fr = await synth("redhat", installNm);
    expect(renderer(fr)).toBe("NetworkManager");
    await customize(fr, "redhat");
    const f = "etc/NetworkManager/system-connections/snf-image-eth0.nmconnection";
    const kf = fr.read(f);
    expect(kf).toContain("mac-address=AA:00:00:5E:00:53");
    expect(kf).toContain("address1=192.0.2.10/24,192.0.2.1");
    expect(modeOf(at(fr, f))).toBe(0o600);
    expect(fr.read("/etc/sysconfig/network-scripts/ifcfg-eth0")).toBe("DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\n");
  });
});

describe("SUSE family (openSUSE Leap layout)", () => {
  test("/etc/hostname when present; /etc/HOSTNAME otherwise; passwords, keys, machine-id", async () => {
    const fr = await synth("suse");
    await customize(fr, "suse");
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
    commonChecks(fr);
    const old = await synth("suse", (root) => fs.rmSync(path.join(root, "etc/hostname")));
    await customize(old, "suse");
    expect(old.read("/etc/HOSTNAME")).toBe("vm1.example.org\n");
    expect(fs.existsSync(at(old, "etc/hostname"))).toBe(false);
  });

  test("wicked-only image: wicked renderer, ifcfg-eth0 rewritten, NIC named by MAC via a .link file", async () => {
    const fr = await synth("suse");
    expect(renderer(fr)).toBe("wicked");
    const ctx = await customize(fr, "suse");
    expect(ctx.warnings).toEqual([]);
    expect(fr.read("/etc/sysconfig/network/ifcfg-eth0")).toContain("IPADDR='192.0.2.10/24'");
    expect(fr.read("/etc/systemd/network/10-snf-image-eth0.link")).toContain("MACAddress=aa:00:00:5e:00:53");
    expect(fs.existsSync(at(fr, "etc/sysconfig/network-scripts"))).toBe(false);
  });

  test("NetworkManager enabled (Tumbleweed / Leap 16 default): keyfiles", async () => {
    const fr = await synth("suse", installNm);
    expect(renderer(fr)).toBe("NetworkManager");
    await customize(fr, "suse");
    expect(fr.read("/etc/NetworkManager/system-connections/snf-image-eth1.nmconnection")).toContain("method=auto");
  });
});

describe("Arch family", () => {
  test("networkd enabled: .network per NIC by MAC; /etc/hostname; passwords, keys, machine-id", async () => {
    const fr = await synth("arch", (root) => enable(root, "systemd-networkd.service"));
    expect(renderer(fr)).toBe("systemd-networkd");
    await customize(fr, "arch");
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
    const n0 = fr.read("/etc/systemd/network/10-snf-image-eth0.network");
    expect(n0).toContain("MACAddress=aa:00:00:5e:00:53");
    expect(n0).toContain("Address=192.0.2.10/24");
    expect(n0).toContain("Gateway=192.0.2.1");
    expect(n0).toContain("DHCP=no");
    expect(fr.read("/etc/systemd/network/10-snf-image-eth1.network")).toContain("DHCP=ipv4");
    // sorts before the image's catch-all 20-wired.network, which stays
    expect(fr.read("/etc/systemd/network/20-wired.network")).toContain("Name=en*");
    commonChecks(fr);
  });

  test("no /etc/hostname: created (systemd layout)", async () => {
    const fr = await synth("arch", (root) => {
      fs.rmSync(path.join(root, "etc/hostname"));
      enable(root, "systemd-networkd.service");
    });
    await customize(fr, "arch");
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
  });
});

describe("negative cases on other families", () => {
  test("USERS naming a user the image lacks: one error naming the user, shadow unchanged", async () => {
    const fr = await synth("redhat");
    const before = fr.read("/etc/shadow");
    const ctx = fakeCtx(fr, { password: PASSWORD, properties: { USERS: "root ghost" } }, { distro: "redhat" });
    await expect(changePassword.run(ctx)).rejects.toThrow(/user ghost does not exist/);
    expect(fr.read("/etc/shadow")).toBe(before);
  });

  test("/etc/hostname a symlink out of the root: written inside the root only", async () => {
    const fr = await synth("arch");
    const outside = path.join(fr.dir, "outside-hostname");
    fs.writeFileSync(outside, "keep\n");
    fs.rmSync(at(fr, "etc/hostname"));
    fs.symlinkSync(outside, at(fr, "etc/hostname"));
    const ctx = fakeCtx(fr, {}, { distro: "arch" });
    await assignHostname.run(ctx).catch(() => {});
    expect(fs.readFileSync(outside, "utf8")).toBe("keep\n");
  });
});

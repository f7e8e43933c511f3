/**
 * Network renderers against fake image roots: format detection from what the
 * image really uses, and the files each format gets (MAC match, static
 * address/prefix/gateway, DHCP, IPv6).
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildNetModel, type NetModel } from "../../helper/net/model.ts";
import { select } from "../../helper/net/renderers.ts";
import { netplan, NETPLAN_FILE } from "../../helper/net/netplan.ts";
import { networkd } from "../../helper/net/networkd.ts";
import { networkManager } from "../../helper/net/networkmanager.ts";
import { ifcfg } from "../../helper/net/ifcfg.ts";
import { ifupdown, INTERFACES, INTERFACES_ORIG } from "../../helper/net/ifupdown.ts";
import { cloudInit } from "../../helper/net/cloudinit.ts";
import { task as configureNetwork } from "../../helper/tasks/ConfigureNetwork.ts";
import { fakeCtx, fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";
import type { Nic } from "../../src/protocol.ts";

const SEED_NETWORK_CONFIG = "/var/lib/cloud/seed/nocloud-net/network-config";
const DISABLE_CFG = "/etc/cloud/cloud.cfg.d/99_snf-image-network.cfg";

let fr: FakeRoot;
afterEach(() => fr?.cleanup());

const NICS: Nic[] = [
  { index: 0, mac: "AA:BB:CC:00:00:01", ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1", subnet6: "2001:db8::/64", gateway6: "2001:db8::1", tags: [] } },
  { index: 1, mac: "aa:bb:cc:00:00:02", ip: "10.9.0.4", network: { subnet: "10.9.0.0/16", tags: ["dhcp"] } },
  { index: 2, mac: "aa:bb:cc:00:00:03", network: { subnet6: "2001:db8:2::/64", tags: ["dhcpv6"] } },
];
const PARAMS = { nics: NICS, dhcpTags: ["dhcp"], statefulDhcpv6Tags: ["dhcpv6"], statelessDhcpv6Tags: ["slaac-dhcp"], defaultNicConfig: "dhcp" };
const model: NetModel = buildNetModel(PARAMS);

const link = (target: string, at: string) => {
  const host = path.join(fr.root, at);
  fs.mkdirSync(path.dirname(host), { recursive: true });
  fs.symlinkSync(target, host);
};
/** Image trees for each way of configuring the network. */
const images = {
  netplan: () => {
    fr.write("/usr/sbin/netplan", "#!/bin/sh\n", 0o755);
    fs.mkdirSync(path.join(fr.root, "etc/netplan"), { recursive: true });
  },
  networkd: () => link("/lib/systemd/system/systemd-networkd.service", "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"),
  nm: () => {
    fr.write("/usr/sbin/NetworkManager", "", 0o755);
    link("/usr/lib/systemd/system/NetworkManager.service", "/etc/systemd/system/multi-user.target.wants/NetworkManager.service");
  },
  ifcfg: () => fs.mkdirSync(path.join(fr.root, "etc/sysconfig/network-scripts"), { recursive: true }),
  ifupdown: () => {
    fr.write("/sbin/ifup", "", 0o755);
    fr.write("/etc/network/interfaces", "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\nallow-hotplug ens3\niface ens3 inet dhcp\n");
    link("/lib/systemd/system/networking.service", "/etc/systemd/system/multi-user.target.wants/networking.service");
  },
  cloud: () => fr.write("/etc/cloud/cloud.cfg", "users: [default]\n"),
};
const probe = (o: Partial<{ forceNetworkManager: boolean; cloudInit: boolean }> = {}) => select(fr.root, { forceNetworkManager: false, cloudInit: false, ...o })?.name;

describe("format detection", () => {
  test("each format is picked from what the image uses", () => {
    for (const [kind, want] of [["netplan", "netplan"], ["networkd", "systemd-networkd"], ["nm", "NetworkManager"], ["ifcfg", "ifcfg"], ["ifupdown", "ifupdown"]] as const) {
      fr = fakeRoot();
      images[kind]();
      expect(probe()).toBe(want);
      fr.cleanup();
    }
  });

  test("/etc/debian_version alone does not mean ifupdown (issue #109); netplan wins", () => {
    fr = fakeRoot({ "/etc/debian_version": "buster/sid\n" });
    expect(probe()).toBeUndefined();
    images.netplan();
    expect(probe()).toBe("netplan");
  });

  test("networkd only when no other manager is enabled; a masked networkd does not count", () => {
    fr = fakeRoot();
    images.networkd();
    images.ifupdown();
    expect(probe()).toBe("ifupdown");
    fr.cleanup();
    fr = fakeRoot();
    images.networkd();
    images.nm();
    expect(probe()).toBe("NetworkManager");
    fr.cleanup();
    fr = fakeRoot();
    images.networkd();
    link("/dev/null", "/etc/systemd/system/systemd-networkd.service");
    expect(probe()).toBeUndefined();
  });

  test("NM_NETWORKING forces NetworkManager; cloud-init only under CLOUD_INIT and as the last resort", () => {
    fr = fakeRoot();
    images.netplan();
    expect(probe({ forceNetworkManager: true })).toBe("NetworkManager");
    fr.cleanup();
    fr = fakeRoot();
    images.cloud();
    expect(probe()).toBeUndefined();
    expect(probe({ cloudInit: true })).toBe("cloud-init");
    images.ifupdown();
    expect(probe({ cloudInit: true })).toBe("ifupdown");
  });
});

describe("renderers", () => {
  test("netplan: MAC match, set-name, static address, default route, dhcp, IPv6; mode 600", () => {
    fr = fakeRoot();
    images.netplan();
    expect(netplan.render(fr.root, model)).toEqual([NETPLAN_FILE]);
    expect(modeOf(path.join(fr.root, NETPLAN_FILE))).toBe(0o600);
    const doc = Bun.YAML.parse(fr.read(NETPLAN_FILE)) as { network: { version: number; ethernets: Record<string, Record<string, unknown>> } };
    expect(doc.network.version).toBe(2);
    expect(doc.network.ethernets).toEqual({
      eth0: {
        match: { macaddress: "aa:bb:cc:00:00:01" },
        "set-name": "eth0",
        dhcp4: false,
        addresses: ["192.0.2.10/24"],
        routes: [{ to: "0.0.0.0/0", via: "192.0.2.1" }],
        dhcp6: false,
        "accept-ra": true,
      },
      eth1: { match: { macaddress: "aa:bb:cc:00:00:02" }, "set-name": "eth1", dhcp4: true, dhcp6: false, "accept-ra": false },
      eth2: { match: { macaddress: "aa:bb:cc:00:00:03" }, "set-name": "eth2", dhcp4: false, dhcp6: true, "accept-ra": true },
    });
  });

  test("systemd-networkd: one .network per NIC matched by MAC", () => {
    fr = fakeRoot();
    images.networkd();
    const files = networkd.render(fr.root, model);
    expect(files).toEqual(["eth0", "eth1", "eth2"].map((n) => `/etc/systemd/network/10-snf-image-${n}.network`));
    expect(fr.read(files[0]!)).toBe(
      "# Written by snf-image\n[Match]\nMACAddress=aa:bb:cc:00:00:01\n\n[Network]\nDHCP=no\nAddress=192.0.2.10/24\nGateway=192.0.2.1\nIPv6AcceptRA=yes\n",
    );
    expect(fr.read(files[1]!)).toContain("MACAddress=aa:bb:cc:00:00:02\n\n[Network]\nDHCP=ipv4\nIPv6AcceptRA=no\n");
    expect(fr.read(files[2]!)).toContain("DHCP=ipv6\nIPv6AcceptRA=yes\n");
  });

  test("NetworkManager keyfiles: 600, mac-address, manual/auto/disabled", () => {
    fr = fakeRoot();
    images.nm();
    const files = networkManager.render(fr.root, model);
    expect(files[0]).toBe("/etc/NetworkManager/system-connections/snf-image-eth0.nmconnection");
    for (const f of files) expect(modeOf(path.join(fr.root, f))).toBe(0o600);
    const k0 = fr.read(files[0]!);
    expect(k0).toContain("type=ethernet\n");
    expect(k0).toMatch(/\nuuid=[0-9a-f-]{36}\n/);
    expect(k0).toContain("[ethernet]\nmac-address=AA:BB:CC:00:00:01\n");
    expect(k0).toContain("[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\n");
    expect(k0).toContain("[ipv6]\nmethod=auto\n");
    expect(fr.read(files[1]!)).toContain("[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=ignore\n");
    expect(fr.read(files[2]!)).toContain("[ipv4]\nmethod=disabled\n\n[ipv6]\nmethod=dhcp\n");
  });

  test("ifcfg: HWADDR, static/dhcp, IPv6 flags spelled right", () => {
    fr = fakeRoot();
    images.ifcfg();
    const files = ifcfg.render(fr.root, model);
    expect(files).toEqual(["eth0", "eth1", "eth2"].map((n) => `/etc/sysconfig/network-scripts/ifcfg-${n}`));
    const f0 = fr.read(files[0]!);
    for (const l of ["DEVICE=eth0", "HWADDR=aa:bb:cc:00:00:01", "ONBOOT=yes", "BOOTPROTO=none", "IPADDR=192.0.2.10", "PREFIX=24", "GATEWAY=192.0.2.1", "IPV6INIT=yes", "IPV6_AUTOCONF=yes", "IPV6_FAILURE_FATAL=no"]) {
      expect(f0.split("\n")).toContain(l);
    }
    expect(f0).not.toContain("FAULURE");
    expect(fr.read(files[1]!).split("\n")).toContain("BOOTPROTO=dhcp");
    expect(fr.read(files[2]!).split("\n")).toContain("DHCPV6C=yes");
  });

  test("ifupdown: interfaces rewritten (original kept), NICs matched with mac/ patterns", () => {
    fr = fakeRoot();
    images.ifupdown();
    const old = fr.read(INTERFACES);
    expect(ifupdown.render(fr.root, model)).toEqual([INTERFACES_ORIG, INTERFACES]);
    expect(fr.read(INTERFACES_ORIG)).toBe(old);
    const text = fr.read(INTERFACES);
    expect(text).toContain("source /etc/network/interfaces.d/*\n");
    expect(text).toContain("auto lo\niface lo inet loopback\n");
    expect(text).not.toContain("ens3");
    expect(text).toContain(
      "auto mac/aa:bb:cc:00:00:01/=snf-eth0\niface snf-eth0 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1\niface snf-eth0 inet6 auto\n",
    );
    expect(text).toContain("auto mac/aa:bb:cc:00:00:02/=snf-eth1\niface snf-eth1 inet dhcp\n");
    expect(text).toContain("auto mac/aa:bb:cc:00:00:03/=snf-eth2\niface snf-eth2 inet6 dhcp\n");
    // A second run keeps the first backup.
    ifupdown.render(fr.root, model);
    expect(fr.read(INTERFACES_ORIG)).toBe(old);
  });

  test("cloud-init: network-config v2 in the NoCloud seed", () => {
    fr = fakeRoot();
    images.cloud();
    cloudInit.render(fr.root, model);
    const doc = Bun.YAML.parse(fr.read(SEED_NETWORK_CONFIG)) as { version: number; ethernets: Record<string, { match: { macaddress: string }; addresses?: string[] }> };
    expect(doc.version).toBe(2);
    expect(doc.ethernets.eth0!.match.macaddress).toBe("aa:bb:cc:00:00:01");
    expect(doc.ethernets.eth0!.addresses).toEqual(["192.0.2.10/24"]);
    expect(modeOf(path.join(fr.root, SEED_NETWORK_CONFIG))).toBe(0o600);
  });
});

describe("ConfigureNetwork task", () => {
  test("renders natively and switches cloud-init's network config off", async () => {
    fr = fakeRoot();
    images.netplan();
    images.cloud();
    const ctx = fakeCtx(fr, PARAMS);
    await configureNetwork.run(ctx);
    expect(fr.read(NETPLAN_FILE)).toContain('macaddress: "aa:bb:cc:00:00:01"');
    expect(fr.read(DISABLE_CFG)).toContain("network: {config: disabled}");
    expect(ctx.infos.some((l) => l.startsWith("netplan: wrote"))).toBe(true);
  });

  test("under CLOUD_INIT with no native format, cloud-init gets the config and stays enabled", async () => {
    fr = fakeRoot();
    images.cloud();
    await configureNetwork.run(fakeCtx(fr, { ...PARAMS, properties: { CLOUD_INIT: "yes" } }));
    expect(fs.existsSync(path.join(fr.root, SEED_NETWORK_CONFIG))).toBe(true);
    expect(fs.existsSync(path.join(fr.root, DISABLE_CFG))).toBe(false);
  });

  test("unknown image: a warning, nothing written; a lone NIC gets the default (dhcp)", async () => {
    fr = fakeRoot();
    const ctx = fakeCtx(fr, { nics: [{ index: 0, mac: "aa:bb:cc:00:00:09" }] });
    await configureNetwork.run(ctx);
    expect(ctx.warnings.join("\n")).toMatch(/cannot tell how the image configures its network/);
    expect(ctx.infos).toContain("eth0 (aa:bb:cc:00:00:09): IPv4 dhcp, IPv6 none");
    images.ifupdown();
    await configureNetwork.run(ctx);
    expect(fr.read(INTERFACES)).toContain("auto mac/aa:bb:cc:00:00:09/=snf-eth0\niface snf-eth0 inet dhcp\n");
  });

  test("a symlinked /etc/netplan pointing outside the image stays inside", async () => {
    fr = fakeRoot();
    fr.write("/usr/sbin/netplan", "", 0o755);
    const outside = path.join(fr.dir, "outside");
    fs.mkdirSync(outside);
    fs.mkdirSync(path.join(fr.root, "outside"));
    // Naively followed from the host, ../../outside from <root>/etc is <dir>/outside.
    fs.symlinkSync("../../outside", path.join(fr.root, "etc/netplan"));
    await configureNetwork.run(fakeCtx(fr, PARAMS));
    expect(fs.readdirSync(outside)).toEqual([]);
    expect(fs.existsSync(path.join(fr.root, "outside/50-snf-image.yaml"))).toBe(true);
  });
});

/**
 * SUSE wicked renderer on a files-only openSUSE root (syntheticRoot("suse"),
 * no NetworkManager): it is the format picked, each NIC is named by MAC with
 * a systemd .link file, and ifcfg-/ifroute-<name> carry the address, prefix,
 * BOOTPROTO and default routes. Also: it stays out of Red Hat, Debian and
 * NetworkManager-enabled SUSE images.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildNetModel, type NetInterface } from "../../helper/net/model.ts";
import { select } from "../../helper/net/renderers.ts";
import { wicked, wickedBootproto, wickedIfcfgText, wickedLinkFile } from "../../helper/net/wicked.ts";
import { task as configureNetwork } from "../../helper/tasks/ConfigureNetwork.ts";
import { syntheticRoot } from "../lib/images.ts";
import { fakeCtx, fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";
import type { Nic } from "../../src/protocol.ts";

let fr: FakeRoot;
afterEach(() => fr?.cleanup());

async function suseRoot(kind: "suse" | "redhat" | "arch" = "suse"): Promise<FakeRoot> {
  const f = fakeRoot();
  fs.rmSync(f.root, { recursive: true, force: true });
  fs.mkdirSync(f.root);
  await syntheticRoot(kind, f.root);
  return f;
}
const probe = () => select(fr.root, { forceNetworkManager: false, cloudInit: false })?.name;
/** Parse KEY='value' lines (comments skipped). */
const vars = (text: string): Record<string, string> =>
  Object.fromEntries(text.split("\n").filter((l) => /^[A-Z0-9_]+=/.test(l)).map((l) => {
    const [k, v] = l.split(/=(.*)/s) as [string, string];
    return [k, v.replace(/^'(.*)'$/, "$1")];
  }));

const NICS: Nic[] = [
  { index: 0, mac: "AA:00:00:5E:00:54", ip: "10.9.8.7", network: { subnet: "10.9.8.0/24", gateway: "10.9.8.1", tags: [] } },
  { index: 1, mac: "aa:00:00:5e:00:55", network: { subnet: "192.0.2.0/24", subnet6: "2001:db8::/64", gateway6: "2001:db8::1", tags: ["dhcp", "dhcpv6"] } },
];
const PARAMS = { nics: NICS, dhcpTags: ["dhcp"], statefulDhcpv6Tags: ["dhcpv6"], statelessDhcpv6Tags: ["slaac-dhcp"], defaultNicConfig: "dhcp" };

describe("wicked detection", () => {
  test("an openSUSE root without NetworkManager gets wicked", async () => {
    fr = await suseRoot();
    expect(probe()).toBe("wicked");
  });

  test("not on Red Hat (/etc/sysconfig/network is a file), Arch or Debian; NetworkManager or networkd enabled on SUSE win", async () => {
    fr = await suseRoot("redhat");
    expect(probe()).toBe("ifcfg");
    fr.cleanup();
    fr = await suseRoot("arch");
    expect(probe()).not.toBe("wicked");
    fr.cleanup();
    fr = fakeRoot();
    expect(probe()).toBeUndefined();
    fr.cleanup();
    fr = await suseRoot();
    fr.write("/usr/sbin/NetworkManager", "", 0o755);
    const link = (target: string, at: string) => {
      fs.mkdirSync(path.dirname(path.join(fr.root, at)), { recursive: true });
      fs.symlinkSync(target, path.join(fr.root, at));
    };
    link("/usr/lib/systemd/system/NetworkManager.service", "/etc/systemd/system/multi-user.target.wants/NetworkManager.service");
    expect(probe()).toBe("NetworkManager");
    fr.cleanup();
    fr = await suseRoot();
    link("/usr/lib/systemd/system/systemd-networkd.service", "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service");
    expect(probe()).toBe("systemd-networkd");
  });

  test("wicked itself (binary, or the network.service alias) without /etc/sysconfig/network/config is enough", async () => {
    fr = fakeRoot();
    fs.mkdirSync(path.join(fr.root, "etc/sysconfig/network"), { recursive: true });
    expect(probe()).toBeUndefined();
    fs.mkdirSync(path.join(fr.root, "etc/systemd/system"), { recursive: true });
    fs.symlinkSync("/usr/lib/systemd/system/wicked.service", path.join(fr.root, "etc/systemd/system/network.service"));
    expect(probe()).toBe("wicked");
    fs.rmSync(path.join(fr.root, "etc/systemd/system/network.service"));
    fr.write("/usr/sbin/wicked", "", 0o755);
    expect(probe()).toBe("wicked");
  });
});

describe("wicked files", () => {
  test("static NIC: .link names it by MAC, ifcfg has the address/prefix, ifroute the default route; other NICs dhcp/dhcpv6", async () => {
    fr = await suseRoot();
    const model = buildNetModel(PARAMS);
    const written = wicked.render(fr.root, model);
    expect(written).toEqual([
      "/etc/systemd/network/10-snf-image-eth0.link", "/etc/sysconfig/network/ifcfg-eth0", "/etc/sysconfig/network/ifroute-eth0",
      "/etc/systemd/network/10-snf-image-eth1.link", "/etc/sysconfig/network/ifcfg-eth1", "/etc/sysconfig/network/ifroute-eth1",
    ]);
    const link = fr.read("/etc/systemd/network/10-snf-image-eth0.link");
    expect(link).toMatch(/^\[Match\]\nMACAddress=aa:00:00:5e:00:54\n\n\[Link\]\nName=eth0\n$/m);
    // the template's dhcp ifcfg-eth0 is replaced
    expect(vars(fr.read("/etc/sysconfig/network/ifcfg-eth0"))).toEqual({ STARTMODE: "auto", BOOTPROTO: "static", IPADDR: "10.9.8.7/24" });
    expect(fr.read("/etc/sysconfig/network/ifroute-eth0").split("\n").filter((l) => l && !l.startsWith("#"))).toEqual(["default 10.9.8.1 - eth0"]);
    expect(modeOf(path.join(fr.root, "etc/sysconfig/network/ifcfg-eth0"))).toBe(0o600);
    expect(vars(fr.read("/etc/sysconfig/network/ifcfg-eth1"))).toEqual({ STARTMODE: "auto", BOOTPROTO: "dhcp", DHCLIENT6_MODE: "managed" });
    expect(fr.read("/etc/sysconfig/network/ifroute-eth1")).toContain("default 2001:db8::1 - eth1");
    expect(fr.read("/etc/systemd/network/10-snf-image-eth1.link")).toContain("MACAddress=aa:00:00:5e:00:55\n");
    // global config untouched
    expect(fr.read("/etc/sysconfig/network/config")).toContain("NETCONFIG_MODULES_ORDER");
  });

  test("BOOTPROTO for every IPv4 × IPv6 combination", () => {
    const i = (ipv4?: NetInterface["ipv4"], ipv6?: NetInterface["ipv6"]): NetInterface => ({ index: 0, mac: "aa:bb:cc:dd:ee:ff", name: "eth0", ipv4, ipv6 });
    const st = { method: "static" as const, address: "192.0.2.5", prefix: 24 };
    const dh = { method: "dhcp" as const };
    expect(wickedBootproto(i(st))).toBe("static");
    expect(wickedBootproto(i(st, { method: "slaac" }))).toBe("static");
    expect(wickedBootproto(i(st, { method: "dhcp" }))).toBe("static+dhcp6");
    expect(wickedBootproto(i(st, { method: "slaac_dhcp" }))).toBe("static+dhcp6");
    expect(wickedBootproto(i(dh))).toBe("dhcp4");
    expect(wickedBootproto(i(dh, { method: "slaac" }))).toBe("dhcp4");
    expect(wickedBootproto(i(dh, { method: "dhcp" }))).toBe("dhcp");
    expect(wickedBootproto(i(undefined, { method: "dhcp" }))).toBe("dhcp6");
    expect(wickedBootproto(i(undefined, { method: "slaac" }))).toBe("auto6");
    expect(wickedBootproto(i())).toBe("none");
    expect(vars(wickedIfcfgText(i(st, { method: "slaac_dhcp" })))).toEqual({ STARTMODE: "auto", BOOTPROTO: "static+dhcp6", IPADDR: "192.0.2.5/24", DHCLIENT6_MODE: "info" });
  });

  test("ConfigureNetwork on the SUSE root writes wicked files and logs it", async () => {
    fr = await suseRoot();
    const ctx = fakeCtx(fr, { nics: [NICS[0]!] });
    await configureNetwork.run(ctx);
    expect(ctx.warnings).toEqual([]);
    expect(ctx.infos.join("\n")).toContain("wicked: wrote /etc/systemd/network/10-snf-image-eth0.link, /etc/sysconfig/network/ifcfg-eth0, /etc/sysconfig/network/ifroute-eth0");
    expect(fr.read(wickedLinkFile({ index: 0, mac: "", name: "eth0" }))).toContain("MACAddress=aa:00:00:5e:00:54");
  });
});

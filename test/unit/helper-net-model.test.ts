/** The neutral network model built from Ganeti NIC parameters. */
import { describe, expect, test } from "bun:test";
import { buildNetModel, parseDefaultNicConfig } from "../../helper/net/model.ts";
import type { Nic } from "../../src/protocol.ts";

const base = { dhcpTags: ["nfdhcpd"], statefulDhcpv6Tags: ["dhcpv6"], statelessDhcpv6Tags: ["dhcpv6-stateless"], defaultNicConfig: "dhcp" };
const nic = (index: number, extra: Partial<Nic> = {}): Nic => ({ index, mac: `AA:00:00:00:00:0${index}`, ...extra });

describe("buildNetModel", () => {
  test("static IPv4 from IP + subnet prefix + gateway, matched by lower-case MAC", () => {
    const m = buildNetModel({ ...base, nics: [nic(0, { ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1", tags: [] } })] });
    expect(m.interfaces).toEqual([
      { index: 0, mac: "aa:00:00:00:00:00", name: "eth0", ipv4: { method: "static", address: "192.0.2.10", prefix: 24, gateway: "192.0.2.1" } },
    ]);
  });

  test("DHCP by network tag, and an IP without a subnet means DHCP", () => {
    const m = buildNetModel({
      ...base,
      nics: [
        nic(0, { ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", tags: ["nfdhcpd"] } }),
        nic(1, { ip: "198.51.100.7" }),
        nic(2),
      ],
    });
    expect(m.interfaces.map((i) => i.ipv4)).toEqual([{ method: "dhcp" }, { method: "dhcp" }, undefined]);
  });

  test("IPv6 by tag only when the network has subnet6/gateway6", () => {
    const v6 = { subnet6: "2001:db8::/64", gateway6: "2001:db8::1" };
    const m = buildNetModel({
      ...base,
      nics: [
        nic(0, { network: { ...v6, tags: [] } }),
        nic(1, { network: { ...v6, tags: ["dhcpv6"] } }),
        nic(2, { network: { subnet6: "2001:db8:1::/64", tags: ["dhcpv6-stateless"] } }),
        nic(3, { network: { tags: ["dhcpv6"] } }),
      ],
    });
    expect(m.interfaces.map((i) => i.ipv6?.method)).toEqual(["slaac", "dhcp", "slaac_dhcp", undefined]);
    expect(m.interfaces[0]!.ipv6).toEqual({ method: "slaac", gateway: "2001:db8::1" });
  });

  test("a lone NIC with nothing gets defaultNicConfig; several NICs do not", () => {
    expect(buildNetModel({ ...base, nics: [nic(0)] }).interfaces[0]!.ipv4).toEqual({ method: "dhcp" });
    const both = buildNetModel({ ...base, defaultNicConfig: "dhcp+slaac_dhcp", nics: [nic(0)] }).interfaces[0]!;
    expect([both.ipv4, both.ipv6]).toEqual([{ method: "dhcp" }, { method: "slaac_dhcp" }]);
    const none = buildNetModel({ ...base, defaultNicConfig: "", nics: [nic(0)] }).interfaces[0]!;
    expect(none.ipv4 ?? none.ipv6).toBeUndefined();
    expect(buildNetModel({ ...base, nics: [nic(0), nic(1)] }).interfaces.every((i) => !i.ipv4 && !i.ipv6)).toBe(true);
    expect(parseDefaultNicConfig("dhcpv6")).toEqual({ ipv6: { method: "dhcp" } });
    expect(() => parseDefaultNicConfig("static")).toThrow(/bad default NIC config/);
  });

  test("bad input is a clear error", () => {
    expect(() => buildNetModel({ ...base, nics: [nic(0, { ip: "300.1.1.1" })] })).toThrow(/NIC 0: IP "300.1.1.1" is not an IPv4 address/);
    expect(() => buildNetModel({ ...base, nics: [nic(0, { ip: "10.0.0.5", network: { subnet: "10.0.0.0", tags: [] } })] })).toThrow(/not an IPv4 network in CIDR form/);
    expect(() => buildNetModel({ ...base, nics: [nic(0, { ip: "10.1.0.5", network: { subnet: "10.0.0.0/16", tags: [] } })] })).toThrow(/not inside its network's subnet/);
    expect(() => buildNetModel({ ...base, nics: [nic(0, { network: { gateway6: "fe80::zz", tags: [] } })] })).toThrow(/gateway6/);
    expect(() => buildNetModel({ ...base, nics: [nic(0), { index: 1, mac: "aa:00:00:00:00:00" }] })).toThrow(/same MAC/);
  });
});

/**
 * The neutral network model: what each NIC (matched by MAC) should get,
 * independent of the on-disk format. Built once from the Ganeti NIC
 * parameters; every renderer reads only this.
 *
 * Rules (the original's, minus its bugs):
 *  IPv4  dhcp   — the network carries a DHCP tag, or the NIC has an IP but
 *                 its network has no subnet;
 *        static — IP + the network's subnet prefix (+ gateway);
 *        none   — no IP and no DHCP tag.
 *  IPv6  only when the network has subnet6 or gateway6: a stateful-DHCPv6
 *        tag → dhcp, a stateless tag → slaac_dhcp, else slaac.
 *  A lone NIC with neither gets defaultNicConfig ("", dhcp, dhcpv6, slaac,
 *  slaac_dhcp, or an IPv4 and an IPv6 choice joined with "+", e.g. "dhcp+slaac").
 */
import type { HelperParams, Nic } from "../../src/protocol.ts";
import { inSubnet4, isIPv4, isIPv6, parseCidr } from "./ip.ts";

export type Ipv4Config = { method: "dhcp" } | { method: "static"; address: string; prefix: number; gateway?: string };
/** slaac: router advertisements only; slaac_dhcp: SLAAC plus stateless DHCPv6 (other config); dhcp: stateful DHCPv6. */
export type Ipv6Config = { method: "slaac" | "slaac_dhcp" | "dhcp"; gateway?: string };

export interface NetInterface {
  index: number;
  /** Lower-case colon-separated MAC: the only thing interfaces are matched by. */
  mac: string;
  /** Stable name for formats that rename (netplan set-name); eth<index>. */
  name: string;
  ipv4?: Ipv4Config;
  ipv6?: Ipv6Config;
}

export interface NetModel {
  interfaces: NetInterface[];
}

type NetParams = Pick<HelperParams, "nics" | "dhcpTags" | "statefulDhcpv6Tags" | "statelessDhcpv6Tags" | "defaultNicConfig">;

const intersects = (a: string[], b: string[]): boolean => a.some((x) => b.includes(x));

export function parseDefaultNicConfig(value: string): Pick<NetInterface, "ipv4" | "ipv6"> {
  const out: Pick<NetInterface, "ipv4" | "ipv6"> = {};
  for (const tok of value.split("+").map((t) => t.trim().toLowerCase()).filter(Boolean)) {
    if (tok === "dhcp" && !out.ipv4) out.ipv4 = { method: "dhcp" };
    else if (tok === "dhcpv6" && !out.ipv6) out.ipv6 = { method: "dhcp" };
    else if (tok === "slaac" && !out.ipv6) out.ipv6 = { method: "slaac" };
    else if (tok === "slaac_dhcp" && !out.ipv6) out.ipv6 = { method: "slaac_dhcp" };
    else throw new Error(`bad default NIC config ${JSON.stringify(value)}: expected dhcp, dhcpv6, slaac, slaac_dhcp or dhcp+<IPv6 choice>`);
  }
  return out;
}

function nicIpv4(nic: Nic, p: NetParams): Ipv4Config | undefined {
  const net = nic.network;
  const tags = net?.tags ?? [];
  if (intersects(tags, p.dhcpTags)) return { method: "dhcp" };
  const ip = nic.ip?.trim();
  if (!ip) return undefined;
  if (!isIPv4(ip)) throw new Error(`NIC ${nic.index}: IP ${JSON.stringify(ip)} is not an IPv4 address`);
  if (!net?.subnet) return { method: "dhcp" };
  const subnet = parseCidr(net.subnet, 4, `NIC ${nic.index}: subnet`);
  if (!inSubnet4(ip, subnet)) throw new Error(`NIC ${nic.index}: IP ${ip} is not inside its network's subnet ${net.subnet}`);
  const cfg: Ipv4Config = { method: "static", address: ip, prefix: subnet.prefix };
  if (net.gateway) {
    if (!isIPv4(net.gateway)) throw new Error(`NIC ${nic.index}: gateway ${JSON.stringify(net.gateway)} is not an IPv4 address`);
    cfg.gateway = net.gateway;
  }
  return cfg;
}

function nicIpv6(nic: Nic, p: NetParams): Ipv6Config | undefined {
  const net = nic.network;
  if (!net?.subnet6 && !net?.gateway6) return undefined;
  if (net.subnet6) parseCidr(net.subnet6, 6, `NIC ${nic.index}: subnet6`);
  if (net.gateway6 && !isIPv6(net.gateway6)) throw new Error(`NIC ${nic.index}: gateway6 ${JSON.stringify(net.gateway6)} is not an IPv6 address`);
  const tags = net.tags ?? [];
  const method = intersects(tags, p.statefulDhcpv6Tags) ? "dhcp" : intersects(tags, p.statelessDhcpv6Tags) ? "slaac_dhcp" : "slaac";
  return net.gateway6 ? { method, gateway: net.gateway6 } : { method };
}

export function buildNetModel(p: NetParams): NetModel {
  const nics = [...p.nics].sort((a, b) => a.index - b.index);
  const seen = new Set<string>();
  const interfaces = nics.map((nic): NetInterface => {
    const mac = nic.mac.toLowerCase();
    if (seen.has(mac)) throw new Error(`two NICs have the same MAC ${mac}`);
    seen.add(mac);
    const iface: NetInterface = { index: nic.index, mac, name: `eth${nic.index}` };
    const v4 = nicIpv4(nic, p);
    const v6 = nicIpv6(nic, p);
    if (v4) iface.ipv4 = v4;
    if (v6) iface.ipv6 = v6;
    return iface;
  });
  if (interfaces.length === 1 && !interfaces[0]!.ipv4 && !interfaces[0]!.ipv6) {
    Object.assign(interfaces[0]!, parseDefaultNicConfig(p.defaultNicConfig));
  }
  return { interfaces };
}

/** One line per interface, for the log. */
export function describeModel(m: NetModel): string[] {
  return m.interfaces.map((i) => {
    const v4 = !i.ipv4 ? "none" : i.ipv4.method === "dhcp" ? "dhcp" : `${i.ipv4.address}/${i.ipv4.prefix}${i.ipv4.gateway ? ` via ${i.ipv4.gateway}` : ""}`;
    return `${i.name} (${i.mac}): IPv4 ${v4}, IPv6 ${i.ipv6?.method ?? "none"}`;
  });
}

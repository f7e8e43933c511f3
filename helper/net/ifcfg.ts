/**
 * Red Hat ifcfg: /etc/sysconfig/network-scripts/ifcfg-<name> with HWADDR
 * (initscripts' rename_device and NetworkManager's ifcfg-rh both match it).
 */
import type { NetInterface, NetModel } from "./model.ts";
import { writeFileIn } from "../lib/safepath.ts";
import { hasIfcfg } from "./probe.ts";
import type { NetRenderer } from "./renderer.ts";

export const ifcfgFile = (i: NetInterface): string => `/etc/sysconfig/network-scripts/ifcfg-${i.name}`;

export function ifcfgText(i: NetInterface): string {
  const l = ["# Written by snf-image", `DEVICE=${i.name}`, `HWADDR=${i.mac}`, "TYPE=Ethernet", "ONBOOT=yes", "NM_CONTROLLED=yes"];
  if (i.ipv4?.method === "static") {
    l.push("BOOTPROTO=none", `IPADDR=${i.ipv4.address}`, `PREFIX=${i.ipv4.prefix}`);
    if (i.ipv4.gateway) l.push(`GATEWAY=${i.ipv4.gateway}`, "DEFROUTE=yes");
  } else {
    l.push(`BOOTPROTO=${i.ipv4?.method === "dhcp" ? "dhcp" : "none"}`);
  }
  if (i.ipv6) {
    l.push("IPV6INIT=yes", "IPV6_AUTOCONF=yes", "IPV6_FAILURE_FATAL=no");
    if (i.ipv6.method === "dhcp") l.push("DHCPV6C=yes");
    if (i.ipv6.method === "slaac_dhcp") l.push("DHCPV6C=yes", "DHCPV6C_OPTIONS=-S");
  } else {
    l.push("IPV6INIT=no");
  }
  return `${l.join("\n")}\n`;
}

export const ifcfg: NetRenderer = {
  name: "ifcfg",
  available: (root) => hasIfcfg(root),
  render(root, model: NetModel) {
    return model.interfaces.map((i) => {
      writeFileIn(root, ifcfgFile(i), ifcfgText(i), { mode: 0o644, uid: 0, gid: 0 });
      return ifcfgFile(i);
    });
  },
};

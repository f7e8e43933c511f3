/**
 * SUSE wicked: /etc/sysconfig/network/ifcfg-<name> (+ ifroute-<name> for the
 * default routes).
 *
 * wicked names its configuration after the interface and cannot match an
 * ifcfg file by MAC, so the NIC is first given a stable name by MAC: a
 * systemd .link file (/etc/systemd/network/10-snf-image-<name>.link, applied
 * by udev's net_setup_link on every systemd-based SUSE) names the interface
 * with that MAC eth<index> — the names SUSE images use (net.ifnames=0) and the
 * same ones the netplan renderer gives with set-name.
 *
 * BOOTPROTO: static | dhcp4 | dhcp6 | dhcp (both) | auto6 | none; a static
 * IPv4 with DHCPv6 is "static+dhcp6" (wicked splits BOOTPROTO on "+").
 * DHCLIENT6_MODE is managed for stateful DHCPv6 and info for stateless.
 */
import type { NetInterface, NetModel } from "./model.ts";
import { mkdirIn, writeFileIn } from "../lib/safepath.ts";
import { hasWicked } from "./probe.ts";
import type { NetRenderer } from "./renderer.ts";

const DIR = "/etc/sysconfig/network";
export const wickedIfcfgFile = (i: NetInterface): string => `${DIR}/ifcfg-${i.name}`;
export const wickedRouteFile = (i: NetInterface): string => `${DIR}/ifroute-${i.name}`;
export const wickedLinkFile = (i: NetInterface): string => `/etc/systemd/network/10-snf-image-${i.name}.link`;

export function wickedBootproto(i: NetInterface): string {
  const v4 = i.ipv4?.method;
  const v6 = i.ipv6?.method;
  const v6dhcp = v6 === "dhcp" || v6 === "slaac_dhcp";
  if (v4 === "static") return v6dhcp ? "static+dhcp6" : "static";
  if (v4 === "dhcp") return v6dhcp ? "dhcp" : "dhcp4";
  if (v6dhcp) return "dhcp6";
  if (v6 === "slaac") return "auto6";
  return "none";
}

export function wickedIfcfgText(i: NetInterface): string {
  const l = ["# Written by snf-image", `# NIC ${i.index}, ${i.mac} (named ${i.name} by ${wickedLinkFile(i)})`, "STARTMODE='auto'", `BOOTPROTO='${wickedBootproto(i)}'`];
  if (i.ipv4?.method === "static") l.push(`IPADDR='${i.ipv4.address}/${i.ipv4.prefix}'`);
  if (i.ipv6?.method === "dhcp") l.push("DHCLIENT6_MODE='managed'");
  if (i.ipv6?.method === "slaac_dhcp") l.push("DHCLIENT6_MODE='info'");
  return `${l.join("\n")}\n`;
}

/** ifroute-<name>: "DESTINATION GATEWAY NETMASK INTERFACE"; always written so a template's stale routes for the name go. */
export function wickedRouteText(i: NetInterface): string {
  const l = ["# Written by snf-image"];
  if (i.ipv4?.method === "static" && i.ipv4.gateway) l.push(`default ${i.ipv4.gateway} - ${i.name}`);
  if (i.ipv6?.gateway) l.push(`default ${i.ipv6.gateway} - ${i.name}`);
  return `${l.join("\n")}\n`;
}

export function wickedLinkText(i: NetInterface): string {
  return ["# Written by snf-image: name the NIC with this MAC for wicked's ifcfg-" + i.name, "[Match]", `MACAddress=${i.mac}`, "", "[Link]", `Name=${i.name}`, ""].join("\n");
}

export const wicked: NetRenderer = {
  name: "wicked",
  available: (root) => hasWicked(root),
  render(root, model: NetModel) {
    const meta = { mode: 0o644, uid: 0, gid: 0 };
    mkdirIn(root, "/etc/systemd/network");
    const written: string[] = [];
    for (const i of model.interfaces) {
      writeFileIn(root, wickedLinkFile(i), wickedLinkText(i), meta);
      writeFileIn(root, wickedIfcfgFile(i), wickedIfcfgText(i), { ...meta, mode: 0o600 });
      writeFileIn(root, wickedRouteFile(i), wickedRouteText(i), meta);
      written.push(wickedLinkFile(i), wickedIfcfgFile(i), wickedRouteFile(i));
    }
    return written;
  },
};

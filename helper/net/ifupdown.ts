/**
 * ifupdown (Debian): rewrite /etc/network/interfaces, the image's own file
 * kept once as interfaces.snf-image.orig.
 *
 * Matching by MAC without udev renames: ifupdown >= 0.8 (Debian 9+) accepts
 * `auto mac/<MAC>/=<logical>` — at boot `ifup -a` (networking.service,
 * after ifupdown-pre.service has waited for udev to settle) finds the
 * interface whose /sys/class/net/<if>/address is <MAC>, whatever name udev
 * gave it (ens3, enp0s3, eth0…), and configures it from `iface <logical>`.
 * Checked with ifupdown 0.8.41 (bookworm): `ifup -a -n` configures
 * "eth0=snf-eth0". (`allow-hotplug` with a pattern does NOT work: the
 * hotplug path looks the physical name up literally.)
 */
import type { NetInterface, NetModel } from "./model.ts";
import { existsIn, readTextIn, writeFileIn } from "../lib/safepath.ts";
import { ifupdownInstalled } from "./probe.ts";
import type { NetRenderer } from "./renderer.ts";

export const INTERFACES = "/etc/network/interfaces";
export const INTERFACES_ORIG = "/etc/network/interfaces.snf-image.orig";

export const logicalName = (i: NetInterface): string => `snf-${i.name}`;

export function ifaceStanzas(i: NetInterface): string[] {
  const n = logicalName(i);
  const out: string[] = [];
  if (i.ipv4?.method === "dhcp") out.push(`iface ${n} inet dhcp`);
  if (i.ipv4?.method === "static") {
    out.push(`iface ${n} inet static`, `    address ${i.ipv4.address}/${i.ipv4.prefix}`);
    if (i.ipv4.gateway) out.push(`    gateway ${i.ipv4.gateway}`);
  }
  if (i.ipv6?.method === "dhcp") out.push(`iface ${n} inet6 dhcp`);
  if (i.ipv6?.method === "slaac") out.push(`iface ${n} inet6 auto`);
  if (i.ipv6?.method === "slaac_dhcp") out.push(`iface ${n} inet6 auto`, "    dhcp 1");
  if (out.length === 0) return [];
  return [`auto mac/${i.mac}/=${n}`, ...out, ""];
}

/** The new interfaces file; `source`/`source-directory` lines of the old one are kept. */
export function interfacesText(model: NetModel, oldText: string): string {
  const sources = oldText.split("\n").filter((l) => /^\s*source(-directory)?\s/.test(l)).map((l) => l.trim());
  return [
    "# Written by snf-image (the image's own file is interfaces.snf-image.orig).",
    "# Interfaces are matched by MAC address, whatever name udev gives them.",
    ...(sources.length > 0 ? ["", ...sources] : []),
    "",
    "auto lo",
    "iface lo inet loopback",
    "",
    ...model.interfaces.flatMap(ifaceStanzas),
  ].join("\n");
}

export const ifupdown: NetRenderer = {
  name: "ifupdown",
  available: (root) => ifupdownInstalled(root),
  render(root, model: NetModel) {
    const old = readTextIn(root, INTERFACES);
    const written: string[] = [];
    if (old !== undefined && !existsIn(root, INTERFACES_ORIG)) {
      writeFileIn(root, INTERFACES_ORIG, old);
      written.push(INTERFACES_ORIG);
    }
    writeFileIn(root, INTERFACES, interfacesText(model, old ?? ""));
    written.push(INTERFACES);
    return written;
  },
};

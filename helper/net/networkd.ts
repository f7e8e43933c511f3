/** systemd-networkd: one /etc/systemd/network/10-snf-image-<name>.network per NIC, matched by MAC. */
import type { NetInterface, NetModel } from "./model.ts";
import { mkdirIn, writeFileIn } from "../lib/safepath.ts";
import { ifupdownEnabled, networkManagerEnabled, networkdEnabled } from "./probe.ts";
import type { NetRenderer } from "./renderer.ts";

export const networkdFile = (i: NetInterface): string => `/etc/systemd/network/10-snf-image-${i.name}.network`;

export function networkdUnit(i: NetInterface): string {
  const v4dhcp = i.ipv4?.method === "dhcp";
  const v6dhcp = i.ipv6?.method === "dhcp" || i.ipv6?.method === "slaac_dhcp";
  const dhcp = v4dhcp && v6dhcp ? "yes" : v4dhcp ? "ipv4" : v6dhcp ? "ipv6" : "no";
  const lines = ["# Written by snf-image", "[Match]", `MACAddress=${i.mac}`, "", "[Network]", `DHCP=${dhcp}`];
  if (i.ipv4?.method === "static") {
    lines.push(`Address=${i.ipv4.address}/${i.ipv4.prefix}`);
    if (i.ipv4.gateway) lines.push(`Gateway=${i.ipv4.gateway}`);
  }
  lines.push(`IPv6AcceptRA=${i.ipv6 ? "yes" : "no"}`);
  return `${lines.join("\n")}\n`;
}

export const networkd: NetRenderer = {
  name: "systemd-networkd",
  // Only when networkd is what the image runs: enabled, and no other manager enabled.
  available: (root) => networkdEnabled(root) && !networkManagerEnabled(root) && !ifupdownEnabled(root),
  render(root, model: NetModel) {
    mkdirIn(root, "/etc/systemd/network");
    return model.interfaces.map((i) => {
      writeFileIn(root, networkdFile(i), networkdUnit(i), { mode: 0o644, uid: 0, gid: 0 });
      return networkdFile(i);
    });
  },
};

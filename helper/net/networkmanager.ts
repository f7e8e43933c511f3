/** NetworkManager keyfiles: /etc/NetworkManager/system-connections/snf-image-<name>.nmconnection (0600), matched by MAC. */
import { randomUUID } from "../lib/random.ts";
import type { NetInterface, NetModel } from "./model.ts";
import { mkdirIn, writeFileIn } from "../lib/safepath.ts";
import { networkManagerEnabled } from "./probe.ts";
import type { NetRenderer } from "./renderer.ts";

export const nmFile = (i: NetInterface): string => `/etc/NetworkManager/system-connections/snf-image-${i.name}.nmconnection`;

export function nmKeyfile(i: NetInterface, uuid: string = randomUUID()): string {
  const v4 = !i.ipv4 ? ["method=disabled"] : i.ipv4.method === "dhcp" ? ["method=auto"] : [
    "method=manual",
    `address1=${i.ipv4.address}/${i.ipv4.prefix}${i.ipv4.gateway ? `,${i.ipv4.gateway}` : ""}`,
  ];
  // auto = SLAAC, plus DHCPv6 when the router's flags ask for it; dhcp = stateful DHCPv6 only.
  const v6 = !i.ipv6 ? "ignore" : i.ipv6.method === "dhcp" ? "dhcp" : "auto";
  return [
    "# Written by snf-image",
    "[connection]",
    `id=snf-image ${i.name}`,
    `uuid=${uuid}`,
    "type=ethernet",
    "autoconnect=true",
    "autoconnect-priority=100",
    "",
    "[ethernet]",
    `mac-address=${i.mac.toUpperCase()}`,
    "",
    "[ipv4]",
    ...v4,
    "",
    "[ipv6]",
    `method=${v6}`,
    "",
  ].join("\n");
}

export const networkManager: NetRenderer = {
  name: "NetworkManager",
  available: (root) => networkManagerEnabled(root),
  render(root, model: NetModel) {
    mkdirIn(root, "/etc/NetworkManager/system-connections", { mode: 0o700 });
    return model.interfaces.map((i) => {
      writeFileIn(root, nmFile(i), nmKeyfile(i), { mode: 0o600, uid: 0, gid: 0 });
      return nmFile(i);
    });
  },
};

/** The v2 (netplan / cloud-init network-config) "ethernets" document, shared by both renderers. */
import type { NetModel } from "./model.ts";

const q = (s: string): string => JSON.stringify(s);

/** Lines of the `ethernets:` mapping, indented by `indent` spaces. */
export function v2Ethernets(model: NetModel, indent: number): string[] {
  const p = " ".repeat(indent);
  const out = [`${p}ethernets:`];
  for (const i of model.interfaces) {
    out.push(`${p}  ${i.name}:`, `${p}    match:`, `${p}      macaddress: ${q(i.mac)}`, `${p}    set-name: ${i.name}`);
    out.push(`${p}    dhcp4: ${i.ipv4?.method === "dhcp"}`);
    if (i.ipv4?.method === "static") {
      out.push(`${p}    addresses:`, `${p}      - ${q(`${i.ipv4.address}/${i.ipv4.prefix}`)}`);
      if (i.ipv4.gateway) out.push(`${p}    routes:`, `${p}      - to: ${q("0.0.0.0/0")}`, `${p}        via: ${q(i.ipv4.gateway)}`);
    }
    // dhcp6 starts a DHCPv6 client (stateful or stateless, as the router's flags say); accept-ra gives SLAAC.
    out.push(`${p}    dhcp6: ${i.ipv6?.method === "dhcp" || i.ipv6?.method === "slaac_dhcp"}`);
    out.push(`${p}    accept-ra: ${i.ipv6 !== undefined}`);
  }
  return out;
}

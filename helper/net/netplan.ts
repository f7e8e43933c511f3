/** netplan: /etc/netplan/50-snf-image.yaml, each NIC matched by MAC and renamed with set-name. */
import type { NetModel } from "./model.ts";
import { writeFileIn } from "../lib/safepath.ts";
import { hasNetplan } from "./probe.ts";
import { v2Ethernets } from "./yaml.ts";
import type { NetRenderer } from "./renderer.ts";

export const NETPLAN_FILE = "/etc/netplan/50-snf-image.yaml";

export function netplanYaml(model: NetModel): string {
  return ["# Written by snf-image", "network:", "  version: 2", ...v2Ethernets(model, 2), ""].join("\n");
}

export const netplan: NetRenderer = {
  name: "netplan",
  available: (root) => hasNetplan(root),
  render(root, model) {
    // netplan refuses world-readable files in recent versions: 0600.
    writeFileIn(root, NETPLAN_FILE, netplanYaml(model), { mode: 0o600, uid: 0, gid: 0 });
    return [NETPLAN_FILE];
  },
};

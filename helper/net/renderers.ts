/**
 * The ordered table of network formats. select() returns the first one the
 * mounted image uses. Add a format: write a NetRenderer module, list it here.
 */
import { cloudInit } from "./cloudinit.ts";
import { ifcfg } from "./ifcfg.ts";
import { ifupdown } from "./ifupdown.ts";
import { netplan } from "./netplan.ts";
import { networkManager } from "./networkmanager.ts";
import { networkd } from "./networkd.ts";
import { wicked } from "./wicked.ts";
import type { NetRenderer, ProbeOptions } from "./renderer.ts";

export const RENDERERS: readonly NetRenderer[] = [
  // NM_NETWORKING forces NetworkManager before anything else.
  { ...networkManager, name: "NetworkManager", available: (_root, o) => o.forceNetworkManager },
  netplan,
  networkd,
  networkManager,
  ifcfg,
  wicked,
  ifupdown,
  cloudInit,
];

export function select(root: string, opts: ProbeOptions): NetRenderer | undefined {
  return RENDERERS.find((r) => r.available(root, opts));
}

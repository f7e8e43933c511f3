/**
 * cloud-init network-config v2 in the NoCloud seed (used under CLOUD_INIT
 * when the image has no format snf-image renders itself). Also the switch
 * that stops cloud-init from overwriting a natively rendered config.
 */
import type { NetModel } from "./model.ts";
import { isDirIn, mkdirIn, writeFileIn } from "../lib/safepath.ts";
import type { NetRenderer } from "./renderer.ts";
import { v2Ethernets } from "./yaml.ts";

export const SEED_NETWORK_CONFIG = "/var/lib/cloud/seed/nocloud-net/network-config";
export const DISABLE_CFG = "/etc/cloud/cloud.cfg.d/99-snf-image-network.cfg";

export function networkConfigV2(model: NetModel): string {
  return ["# Written by snf-image", "version: 2", ...v2Ethernets(model, 0), ""].join("\n");
}

export const cloudInit: NetRenderer = {
  name: "cloud-init",
  available: (root, opts) => opts.cloudInit && isDirIn(root, "/etc/cloud"),
  render(root, model: NetModel) {
    mkdirIn(root, "/var/lib/cloud/seed/nocloud-net", { mode: 0o700 });
    writeFileIn(root, SEED_NETWORK_CONFIG, networkConfigV2(model), { mode: 0o600, uid: 0, gid: 0 });
    return [SEED_NETWORK_CONFIG];
  },
};

/** Keep cloud-init from replacing the configuration snf-image wrote (no-op without cloud-init). */
export function disableCloudInitNetwork(root: string): string | undefined {
  if (!isDirIn(root, "/etc/cloud")) return undefined;
  mkdirIn(root, "/etc/cloud/cloud.cfg.d");
  writeFileIn(root, DISABLE_CFG, "# Written by snf-image: the network is configured natively.\nnetwork: {config: disabled}\n", { mode: 0o644, uid: 0, gid: 0 });
  return DISABLE_CFG;
}

/**
 * cloud-init network-config v2 in the NoCloud seed (used under CLOUD_INIT
 * when the image has no format snf-image renders itself). The seed and the
 * "network configured natively" drop-in are os/cloudinit.ts's.
 */
import type { NetModel } from "./model.ts";
import { hasCloudInit, writeSeedFile } from "../os/cloudinit.ts";
import type { NetRenderer } from "./renderer.ts";
import { v2Ethernets } from "./yaml.ts";

export function networkConfigV2(model: NetModel): string {
  return ["# Written by snf-image", "version: 2", ...v2Ethernets(model, 0), ""].join("\n");
}

export const cloudInit: NetRenderer = {
  name: "cloud-init",
  available: (root, opts) => opts.cloudInit && hasCloudInit(root),
  render: (root, model: NetModel) => [writeSeedFile(root, "network-config", networkConfigV2(model))],
};

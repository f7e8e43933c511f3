/** What a network format renderer is. The ordered table lives in renderers.ts. */
import type { NetModel } from "./model.ts";

export interface ProbeOptions {
  /** NM_NETWORKING property: use NetworkManager even if it does not look enabled. */
  forceNetworkManager: boolean;
  /** CLOUD_INIT property. */
  cloudInit: boolean;
}

export interface NetRenderer {
  name: string;
  /** Does the mounted image at `root` use this format? (reads files only) */
  available(root: string, opts: ProbeOptions): boolean;
  /** Write the configuration; returns the guest paths written. */
  render(root: string, model: NetModel): string[];
}

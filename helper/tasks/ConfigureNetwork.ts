/**
 * Configure the image's NICs, matched by MAC: build the neutral model from
 * the Ganeti NIC parameters, pick the format the image really uses
 * (net/renderers.ts) and write it. When snf-image writes the configuration
 * natively, cloud-init's network configuration is switched off so it does not
 * overwrite it at first boot.
 */
import type { Task } from "../task.ts";
import { cloudInit } from "../net/cloudinit.ts";
import { disableCloudInitNetwork } from "../os/cloudinit.ts";
import { buildNetModel, describeModel } from "../net/model.ts";
import { select } from "../net/renderers.ts";
import { configureBsdNetwork, isBsd } from "../os/bsd.ts";

export const task: Task = {
  name: "ConfigureNetwork",
  mounted: true,
  excludable: true,
  families: ["linux", "freebsd", "openbsd", "netbsd"],
  async run(ctx) {
    if (ctx.params.nics.length === 0) {
      ctx.info("the instance has no NICs; nothing to configure");
      return;
    }
    const model = buildNetModel(ctx.params);
    for (const line of describeModel(model)) ctx.info(line);
    if (!model.interfaces.some((i) => i.ipv4 || i.ipv6)) {
      ctx.info("no NIC has an IPv4 or IPv6 configuration; nothing to write");
      return;
    }
    if (isBsd(ctx.os.family)) return configureBsdNetwork(ctx, ctx.os.family, model);
    const renderer = select(ctx.root, { forceNetworkManager: ctx.props.bool("NM_NETWORKING"), cloudInit: ctx.props.bool("CLOUD_INIT") });
    if (!renderer) {
      ctx.warn("cannot tell how the image configures its network (no netplan, systemd-networkd, NetworkManager, ifcfg, wicked or ifupdown found, and CLOUD_INIT is not set); network left unconfigured");
      return;
    }
    const written = renderer.render(ctx.root, model);
    ctx.info(`${renderer.name}: wrote ${written.join(", ")}`);
    if (renderer.name !== cloudInit.name) {
      const off = disableCloudInitNetwork(ctx.root);
      if (off) ctx.info(`cloud-init network configuration disabled (${off})`);
    }
  },
};

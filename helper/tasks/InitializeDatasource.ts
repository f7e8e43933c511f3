/**
 * CLOUD_INIT: make cloud-init use a NoCloud seed written here:
 * /var/lib/cloud/seed/nocloud-net/{meta-data,user-data} (mode 600) and
 * `datasource_list: [ NoCloud ]`. The user-data (it may hold secrets) is
 * emptied by a per-once script at first boot.
 */
import { randomBytes } from "../lib/random.ts";
import type { Task } from "../task.ts";
import { requireCloudInit, SEED_DIR, writeCloudCfg, writePerOnceScript, writeSeedFile } from "../os/cloudinit.ts";

/**
 * prefer_fqdn_over_hostname: cloud-init otherwise cuts local-hostname at the
 * first dot, so an instance named vm1.example.org would boot as "vm1" while
 * AssignHostname (and the non-cloud-init path) make it the whole name.
 */
const DATASOURCE_CFG_TEXT = "datasource_list: [ NoCloud ]\nprefer_fqdn_over_hostname: true\n";

export function metaData(hostname: string, instanceId: string): string {
  return `instance-id: ${JSON.stringify(instanceId)}\nlocal-hostname: ${JSON.stringify(hostname)}\n`;
}

export const task: Task = {
  name: "InitializeDatasource",
  mounted: true,
  excludable: false,
  async run(ctx) {
    if (!ctx.props.bool("CLOUD_INIT")) {
      ctx.info("CLOUD_INIT is not set; nothing to do");
      return;
    }
    requireCloudInit(ctx.root);
    const userdata = new Uint8Array(Buffer.from(ctx.params.cloudUserdata ?? "", "base64")); // base64 checked by the protocol schema
    const instanceId = `iid-snf-${randomBytes(8).toString("hex")}`;
    writeSeedFile(ctx.root, "meta-data", metaData(ctx.params.hostname, instanceId));
    const userdataFile = writeSeedFile(ctx.root, "user-data", userdata);
    writeCloudCfg(ctx.root, "datasource", "NoCloud seed in " + SEED_DIR, DATASOURCE_CFG_TEXT);
    if (userdata.length > 0) writePerOnceScript(ctx.root, "clear-userdata", "the user-data may hold secrets; cloud-init has consumed it.", `: > ${userdataFile}\n`);
    ctx.info(`NoCloud seed written (instance-id ${instanceId}, ${userdata.length} bytes of user-data)`);
  },
};

/**
 * CLOUD_INIT: make cloud-init use a NoCloud seed written here:
 * /var/lib/cloud/seed/nocloud-net/{meta-data,user-data} (mode 600) and
 * `datasource_list: [ NoCloud ]`. The user-data (it may hold secrets) is
 * emptied by a per-once script at first boot.
 */
import { randomBytes } from "node:crypto";
import type { Task } from "../task.ts";
import { isDirIn, mkdirIn, writeFileIn } from "../lib/safepath.ts";

export const SEED_DIR = "/var/lib/cloud/seed/nocloud-net";
export const DATASOURCE_CFG = "/etc/cloud/cloud.cfg.d/99_snf-image-datasource.cfg";
export const CLEAR_SCRIPT = "/var/lib/cloud/scripts/per-once/snf-image-clear-userdata.sh";

/**
 * prefer_fqdn_over_hostname: cloud-init otherwise cuts local-hostname at the
 * first dot, so an instance named vm1.example.org would boot as "vm1" while
 * AssignHostname (and the non-cloud-init path) make it the whole name.
 */
export const DATASOURCE_CFG_TEXT = "# Written by snf-image\ndatasource_list: [ NoCloud ]\nprefer_fqdn_over_hostname: true\n";

export function decodeUserdata(b64: string | undefined): Uint8Array {
  if (b64 === undefined || b64.trim() === "") return new Uint8Array();
  const s = b64.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1) throw new Error("cloud user-data is not valid base64");
  return new Uint8Array(Buffer.from(s, "base64"));
}

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
    if (!isDirIn(ctx.root, "/etc/cloud")) throw new Error("CLOUD_INIT is set but the image has no /etc/cloud (is cloud-init installed?)");
    const userdata = decodeUserdata(ctx.params.cloudUserdata);
    mkdirIn(ctx.root, SEED_DIR, { mode: 0o700 });
    const instanceId = `iid-snf-${randomBytes(8).toString("hex")}`;
    writeFileIn(ctx.root, `${SEED_DIR}/meta-data`, metaData(ctx.params.hostname, instanceId), { mode: 0o600, uid: 0, gid: 0 });
    writeFileIn(ctx.root, `${SEED_DIR}/user-data`, userdata, { mode: 0o600, uid: 0, gid: 0 });
    mkdirIn(ctx.root, "/etc/cloud/cloud.cfg.d");
    writeFileIn(ctx.root, DATASOURCE_CFG, DATASOURCE_CFG_TEXT, { mode: 0o644, uid: 0, gid: 0 });
    if (userdata.length > 0) {
      mkdirIn(ctx.root, "/var/lib/cloud/scripts/per-once");
      writeFileIn(ctx.root, CLEAR_SCRIPT, `#!/bin/sh\n# Written by snf-image: the user-data may hold secrets; cloud-init has consumed it.\n: > ${SEED_DIR}/user-data\n`, {
        mode: 0o700,
        uid: 0,
        gid: 0,
      });
    }
    ctx.info(`NoCloud seed written (instance-id ${instanceId}, ${userdata.length} bytes of user-data)`);
  },
};

/**
 * CUSTOM_TASK property: a base64 script, run with the helper's own bash
 * (Debian's, on the tools disk), never a binary from the image, with the
 * original snf-image's task environment (SNF_IMAGE_*, docs/tasks.md) and
 * nothing else. The script runs inside the helper VM (no network, only the
 * instance's disks); it may write into the mounted image at
 * $SNF_IMAGE_TARGET. A non-zero exit fails the task with the script's last
 * stderr lines. Secrets reach it through the environment, never argv.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { isBase64 } from "../../src/protocol.ts";
import type { Task, TaskContext } from "../task.ts";
import { diskBySerial } from "../disk.ts";

export const SHELL = "/bin/bash";

/** The CUSTOM_TASK property (an image property, so not checked by the host): base64 of the script. */
export function decodeScript(b64: string): string {
  const s = b64.replace(/\s+/g, "");
  if (s === "" || !isBase64(s)) throw new Error("CUSTOM_TASK is not valid base64");
  return Buffer.from(s, "base64").toString("latin1");
}

/** The partition the original calls RESIZE_PART: the last one on the disk (an extended one stands for its logicals). */
function resizePart(ctx: Pick<TaskContext, "disk">): string {
  const outer = ctx.disk.partitions.filter((p) => p.kind !== "logical");
  const last = outer.reduce<(typeof outer)[number] | undefined>((a, p) => (a === undefined || p.startSector > a.startSector ? p : a), undefined);
  return last === undefined ? "" : String(last.number);
}

/**
 * The original's task environment (all SNF_IMAGE_*), plus ROOT_PARTITION,
 * OSFAMILY and DISTRO as this helper knows them. `devOf` maps a disk serial
 * to its /dev node; `answerFile` is where os_answer_file was put, if given.
 */
export function customTaskEnv(
  ctx: Pick<TaskContext, "root" | "disk" | "rootPartition" | "params" | "os">,
  o: { devOf?: (serial: string) => string | undefined; answerFile?: string } = {},
): Record<string, string> {
  const p = ctx.params;
  const env: Record<string, string> = {};
  const set = (k: string, v: string | undefined) => {
    if (v !== undefined) env[`SNF_IMAGE_${k}`] = v;
  };
  const devOf = o.devOf ?? ((serial: string) => (serial === p.disks[0]?.serial ? ctx.disk.dev : undefined));
  const devs = [...p.disks].sort((a, b) => a.index - b.index).map((d) => (d.index === 0 ? ctx.disk.dev : (devOf(d.serial) ?? "")));
  set("DEV", ctx.disk.dev);
  set("DEV_COUNT", String(devs.length));
  devs.forEach((d, i) => set(`DEV_${i}`, d));
  set("TYPE", p.imgFormat);
  set("HOSTNAME", p.hostname);
  set("PASSWD", p.password);
  set("PASSWD_HASH", p.passwordHash);
  set("AUTH_KEYS", p.authKeys);
  set("PERSONALITY", p.personality.length ? JSON.stringify(p.personality) : undefined);
  set("OS_PRODUCT_KEY", p.osProductKey);
  set("CLOUD_USERDATA", p.cloudUserdata);
  set("CLOUD_INIT_DEBUG", p.cloudInitDebug ? "yes" : "no");
  for (const [k, v] of Object.entries(p.properties)) if (/^[A-Z0-9_]+$/i.test(k)) set(`PROPERTY_${k.toUpperCase()}`, v);
  set("RESIZE_PART", resizePart(ctx));
  set("TARGET", ctx.root);
  set("ROOT_PARTITION", String(ctx.rootPartition.number));
  set("OSFAMILY", ctx.os.family);
  set("DISTRO", ctx.os.distro);
  set("NIC_COUNT", String(p.nics.length));
  for (const n of p.nics) {
    const pre = `NIC_${n.index}_`;
    set(`${pre}MAC`, n.mac);
    set(`${pre}IP`, n.ip);
    set(`${pre}MODE`, n.mode);
    set(`${pre}LINK`, n.link);
    set(`${pre}NAME`, n.name);
    set(`${pre}FRONTEND_TYPE`, n.frontendType);
    if (n.network) {
      set(`${pre}NETWORK_NAME`, n.network.name);
      set(`${pre}NETWORK_SUBNET`, n.network.subnet);
      set(`${pre}NETWORK_GATEWAY`, n.network.gateway);
      set(`${pre}NETWORK_SUBNET6`, n.network.subnet6);
      set(`${pre}NETWORK_GATEWAY6`, n.network.gateway6);
      set(`${pre}NETWORK_TAGS`, n.network.tags.join(" "));
    }
  }
  set("DHCP_TAGS", p.dhcpTags.join(" "));
  set("STATEFUL_DHCPV6_TAGS", p.statefulDhcpv6Tags.join(" "));
  set("STATELESS_DHCPV6_TAGS", p.statelessDhcpv6Tags.join(" "));
  set("DEFAULT_NIC_CONFIG", p.defaultNicConfig);
  set("UNATTEND", o.answerFile);
  set("SYSPREPINF", o.answerFile);
  // NUL cannot be in an environment string
  for (const [k, v] of Object.entries(env)) if (v.includes("\0")) delete env[k];
  return env;
}

export const task: Task = {
  name: "RunCustomTask",
  mounted: true,
  excludable: true,
  async run(ctx) {
    const b64 = ctx.props.get("CUSTOM_TASK");
    if (b64 === undefined || b64.trim() === "") {
      ctx.info("no CUSTOM_TASK property; nothing to do");
      return;
    }
    const script = decodeScript(b64);
    const dir = fs.mkdtempSync(path.join(ctx.scratch, "custom-task-"));
    fs.chmodSync(dir, 0o700);
    try {
      const file = path.join(dir, "task");
      fs.writeFileSync(file, script, { mode: 0o700 });
      let answerFile: string | undefined;
      if (ctx.params.answerFile !== undefined) {
        answerFile = path.join(dir, ctx.os.family === "windows-legacy" ? "sysprep.inf" : "unattend.xml");
        fs.writeFileSync(answerFile, Buffer.from(ctx.params.answerFile, "base64"), { mode: 0o600 });
      }
      const env = customTaskEnv(ctx, { devOf: (serial) => diskBySerial(serial), answerFile });
      const r = await ctx.run([SHELL, file], { allowFail: true, env });
      for (const line of tail(r.stdout, 5)) ctx.info(`custom task: ${line}`);
      if (r.exitCode !== 0) {
        const last = tail(r.stderr, 5).join(" | ");
        throw new Error(`custom task exited with status ${r.exitCode}${last ? `: ${last}` : ""}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};

function tail(text: string, n: number): string[] {
  return text
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l !== "")
    .slice(-n);
}

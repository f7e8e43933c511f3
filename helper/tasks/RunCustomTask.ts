/**
 * CUSTOM_TASK property: a base64 shell script, run with the helper's own
 * /bin/sh (busybox), never a binary from the image. The script gets the
 * mounted image as SNF_IMAGE_TARGET. A non-zero exit fails the task with
 * the script's last stderr lines.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Task, TaskContext } from "../task.ts";

export const SHELL = "/bin/sh";

export function decodeScript(b64: string): string {
  const s = b64.replace(/\s+/g, "");
  if (s === "" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1) throw new Error("CUSTOM_TASK is not valid base64");
  return Buffer.from(s, "base64").toString("latin1");
}

/** Environment for the script (no secrets: it goes through argv of `env`). */
export function customTaskEnv(ctx: Pick<TaskContext, "root" | "disk" | "rootPartition" | "params" | "os">): Record<string, string> {
  return {
    SNF_IMAGE_TARGET: ctx.root,
    SNF_IMAGE_DEV: ctx.disk.dev,
    SNF_IMAGE_ROOT_PARTITION: String(ctx.rootPartition.number),
    SNF_IMAGE_HOSTNAME: ctx.params.hostname,
    SNF_IMAGE_OSFAMILY: ctx.os.family,
    SNF_IMAGE_DISTRO: ctx.os.distro,
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  };
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
    const file = path.join(ctx.scratch, `custom-task-${process.pid}.sh`);
    fs.writeFileSync(file, script, { mode: 0o700 });
    try {
      const env = Object.entries(customTaskEnv(ctx)).map(([k, v]) => `${k}=${v}`);
      const r = await ctx.run(["env", "-i", ...env, SHELL, file], { allowFail: true });
      for (const line of tail(r.stdout, 5)) ctx.info(`custom task: ${line}`);
      if (r.exitCode !== 0) {
        const last = tail(r.stderr, 5).join(" | ");
        throw new Error(`custom task exited with status ${r.exitCode}${last ? `: ${last}` : ""}`);
      }
    } finally {
      fs.rmSync(file, { force: true });
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

/** Red Hat family with SELinux not disabled: request a full relabel at first boot (/.autorelabel). */
import type { Task } from "../task.ts";
import { readTextIn, writeFileIn } from "../lib/safepath.ts";

/** SELINUX= value of /etc/selinux/config text ("" if absent). */
export function selinuxMode(configText: string): string {
  let mode = "";
  for (const line of configText.split("\n")) {
    const m = /^\s*SELINUX\s*=\s*["']?([A-Za-z]*)["']?\s*(#.*)?$/.exec(line);
    if (m) mode = m[1]!.toLowerCase();
  }
  return mode;
}

export const task: Task = {
  name: "SELinuxAutorelabel",
  mounted: true,
  excludable: true,
  families: ["linux"],
  async run(ctx) {
    if (ctx.os.distro !== "redhat") {
      ctx.info("not a Red Hat family image; nothing to do");
      return;
    }
    const cfg = readTextIn(ctx.root, "/etc/selinux/config");
    if (cfg === undefined) {
      ctx.info("no /etc/selinux/config; nothing to do");
      return;
    }
    const mode = selinuxMode(cfg);
    if (mode === "disabled" || mode === "") {
      ctx.info(`SELinux is ${mode || "not configured"}; no relabel needed`);
      return;
    }
    writeFileIn(ctx.root, "/.autorelabel", "", { mode: 0o644, uid: 0, gid: 0 });
    ctx.info(`SELinux is ${mode}: /.autorelabel created`);
  },
};

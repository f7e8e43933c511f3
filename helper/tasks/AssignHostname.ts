/**
 * AssignHostname: the instance name becomes the guest's hostname: in
 * /etc/hostname (or the distro's own file, see os/hostname.ts), in the
 * 127.0.1.1 line of /etc/hosts, and in /etc/mailname when the image has one.
 */
import type { Task, TaskContext } from "../task.ts";
import { existsIn, readTextIn, writeFileIn } from "../lib/safepath.ts";
import { rewriteHosts, validHostname, writeHostnameFile } from "../os/hostname.ts";

export function assignHostname(ctx: TaskContext): void {
  const name = ctx.params.hostname.trim();
  if (!validHostname(name)) throw new Error(`instance name ${JSON.stringify(name.slice(0, 64))} is not a valid hostname`);
  const file = writeHostnameFile(ctx.root, ctx.os.distro, name);
  ctx.info(`hostname ${name} written to ${file}`);
  const hosts = readTextIn(ctx.root, "/etc/hosts");
  if (hosts !== undefined) writeFileIn(ctx.root, "/etc/hosts", rewriteHosts(hosts, name));
  else ctx.info("the image has no /etc/hosts; not adding a 127.0.1.1 line");
  if (existsIn(ctx.root, "/etc/mailname")) writeFileIn(ctx.root, "/etc/mailname", `${name}\n`);
}

export const task: Task = {
  name: "AssignHostname",
  mounted: true,
  excludable: true,
  families: ["linux"],
  run: async (ctx) => assignHostname(ctx),
};

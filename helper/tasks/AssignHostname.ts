/**
 * AssignHostname: the instance name becomes the guest's hostname: in
 * /etc/hostname (or the distro's own file, see os/hostname.ts), in the
 * 127.0.1.1 line of /etc/hosts, and in /etc/mailname when the image has one.
 * Windows: the computer name derived from it goes into the answer file's
 * specialize pass (os/windows.ts); windows-legacy: sysprep.inf [UserData].
 */
import type { Task, TaskContext } from "../task.ts";
import { existsIn, readTextIn, writeFileIn } from "../lib/safepath.ts";
import { rewriteHosts, validHostname, writeHostnameFile } from "../os/hostname.ts";
import { editSysprepInf, findSysprepInf, iniSet } from "../os/windows-legacy.ts";
import { isBsd, writeBsdHostname } from "../os/bsd.ts";
import { computerName, editUnattend, findUnattend, setComputerName, windowsArch, winPath } from "../os/windows.ts";

export function assignWindowsHostname(ctx: TaskContext): void {
  const { name, note } = computerName(ctx.params.hostname);
  const answer = findUnattend(ctx.root);
  if (answer === undefined) {
    if (ctx.params.mode === "rename") {
      ctx.warn(`the image has no answer file left (Windows already ran setup): rename the computer to ${name} inside Windows`);
      return;
    }
    throw new Error("the Windows image has no answer file to set the computer name in (is InstallUnattend excluded?)");
  }
  if (note) ctx.warn(note);
  editUnattend(ctx.root, answer, (doc) => setComputerName(doc, windowsArch(ctx.root), name));
  ctx.info(`computer name ${name} set in ${winPath(answer)}`);
}

/** windows-legacy: [UserData] ComputerName in sysprep.inf. */
export function assignLegacyHostname(ctx: TaskContext): void {
  const { name, note } = computerName(ctx.params.hostname);
  if (findSysprepInf(ctx.root) === undefined && ctx.params.mode === "rename") {
    ctx.warn(`the image has no sysprep.inf left (Windows already ran mini-setup): rename the computer to ${name} inside Windows`);
    return;
  }
  if (note) ctx.warn(note);
  const p = editSysprepInf(ctx.root, (t) => iniSet(t, "UserData", "ComputerName", name));
  ctx.info(`computer name ${name} set in ${winPath(p)}`);
}

export function assignHostname(ctx: TaskContext): void {
  if (ctx.os.family === "windows") return assignWindowsHostname(ctx);
  if (ctx.os.family === "windows-legacy") return assignLegacyHostname(ctx);
  const name = ctx.params.hostname.trim();
  if (!validHostname(name)) throw new Error(`instance name ${JSON.stringify(name.slice(0, 64))} is not a valid hostname`);
  if (isBsd(ctx.os.family)) {
    ctx.info(`hostname ${name} written to ${writeBsdHostname(ctx.root, ctx.os.family, name).join(", ")}`);
    return;
  }
  const file = writeHostnameFile(ctx.root, ctx.os.distro, name);
  ctx.info(`hostname ${name} written to ${file}`);
  const hosts = readTextIn(ctx.root, "/etc/hosts");
  if (hosts !== undefined) writeFileIn(ctx.root, "/etc/hosts", rewriteHosts(hosts, name));
  else ctx.info("the image has no /etc/hosts; not adding a 127.0.1.1 line");
  if (existsIn(ctx.root, "/etc/mailname")) writeFileIn(ctx.root, "/etc/mailname", `${name}\n`);
}

export const task: Task = {
  name: "AssignHostname",
  modes: ["create", "rename"],
  mounted: true,
  excludable: true,
  families: ["linux", "windows", "windows-legacy", "freebsd", "openbsd", "netbsd"],
  run: async (ctx) => assignHostname(ctx),
};

/**
 * ChangeMachineId: give the instance its own machine id. /etc/machine-id and
 * /var/lib/dbus/machine-id get one fresh random id, but only where the file
 * already holds an id: an empty or "uninitialized" /etc/machine-id is left
 * alone, because that is the image's way of asking systemd to generate one at
 * first boot (and to run first-boot units). A dbus file that is a symlink
 * (usually to /etc/machine-id) is left as it is.
 */
import { randomUUID } from "../lib/random.ts";
import type { Task, TaskContext } from "../task.ts";
import { lstatIn, readTextIn, writeFileIn } from "../lib/safepath.ts";

/** 32 lower-case hex digits, formatted as a v4 UUID like systemd's own ids. */
export function newMachineId(): string {
  return randomUUID().replaceAll("-", "");
}

const ID = /^[0-9a-f]{32}$/;

export function changeMachineId(ctx: TaskContext, id = newMachineId()): void {
  let changed = 0;
  for (const file of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
    const st = lstatIn(ctx.root, file);
    if (!st) continue; // missing
    if (st.isSymbolicLink() && file !== "/etc/machine-id") continue;
    const cur = readTextIn(ctx.root, file);
    if (cur === undefined) continue;
    if (!ID.test(cur.trim())) {
      ctx.info(`${file} holds no id (${cur.trim() === "" ? "empty" : JSON.stringify(cur.trim().slice(0, 20))}); left for systemd to fill at first boot`);
      continue;
    }
    writeFileIn(ctx.root, file, `${id}\n`);
    changed++;
  }
  if (changed === 0) ctx.info("no machine id to change");
}

export const task: Task = {
  name: "ChangeMachineId",
  mounted: true,
  excludable: true,
  families: ["linux"],
  run: async (ctx) => changeMachineId(ctx),
};

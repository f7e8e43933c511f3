/** UmountImage: flush and unmount everything under the image root, deepest first. */
import type { Task } from "../task.ts";
import { imageMounts } from "../lib/mount.ts";

export const task: Task = {
  name: "UmountImage",
  modes: ["create", "rename"],
  mounted: true,
  excludable: false,
  async run(ctx) {
    await ctx.run(["sync"], { allowFail: true });
    await imageMounts.umountUnder(ctx.root);
  },
};

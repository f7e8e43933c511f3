/**
 * Runs the task table: decides per task whether it runs or is skipped
 * from the task's flags (modes, EXCLUDE_* properties, CLOUD_INIT, OS family), sends TASK_START /
 * TASK_END / TASK_SKIP monitor events, and on the first failure unmounts
 * everything and reports "<Task>: <cause>".
 */
import { oneLine, type HelperParams, type HelperResult, type MonitorEvent } from "../src/protocol.ts";
import type { OsFamily, Props, Task, TaskContext } from "./task.ts";

/**
 * One-line text of any thrown value, for ERROR results. Flattened, not cut at
 * the first newline: a message that quotes the image (an fstab mount point
 * with an escaped newline) still ends with its cause.
 */
export function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return oneLine(msg) || (e instanceof Error ? e.name : "unknown error");
}

/** Why `task` does not run, or undefined if it runs. */
export function skipReason(task: Task, props: Props, mode: HelperParams["mode"], family: OsFamily): string | undefined {
  if (!(task.modes ?? ["create"]).includes(mode)) return `not run on ${mode}`;
  if (props.bool("EXCLUDE_ALL_TASKS")) return "EXCLUDE_ALL_TASKS";
  if (task.mounted && props.bool("EXCLUDE_MOUNTED_TASKS")) return "EXCLUDE_MOUNTED_TASKS";
  if (task.fsResize && props.bool("EXCLUDE_FILESYSTEMRESIZE_TASKS")) return "EXCLUDE_FILESYSTEMRESIZE_TASKS";
  if (task.excludable && props.bool(`EXCLUDE_TASK_${task.name.toUpperCase()}`)) return `EXCLUDE_TASK_${task.name}`;
  if (task.cloudInitSkip && props.bool("CLOUD_INIT")) return "CLOUD_INIT (cloud-init does it in the guest)";
  if (task.families && !task.families.includes(family)) return `not for ${family}`;
  return undefined;
}

export interface RunnerHooks {
  monitor(e: MonitorEvent): void;
  /** Called after a task failed, before reporting: must unmount everything. */
  cleanup(): Promise<void>;
  now?: () => number;
}

export async function runTasks(tasks: readonly Task[], ctx: TaskContext, hooks: RunnerHooks): Promise<HelperResult> {
  const now = hooks.now ?? (() => performance.now());
  for (const task of tasks) {
    const why = skipReason(task, ctx.props, ctx.params.mode, ctx.os.family);
    if (why !== undefined) {
      hooks.monitor({ kind: "TASK_SKIP", task: task.name, reason: why });
      continue;
    }
    hooks.monitor({ kind: "TASK_START", task: task.name });
    const t0 = now();
    try {
      await task.run(ctx);
    } catch (e) {
      const error = `${task.name}: ${errorText(e)}`;
      hooks.monitor({ kind: "ERROR", text: error });
      try {
        await hooks.cleanup();
      } catch {
        // the error being reported matters more
      }
      return { ok: false, error };
    }
    hooks.monitor({ kind: "TASK_END", task: task.name, ms: now() - t0 });
  }
  return { ok: true };
}

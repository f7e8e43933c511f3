/**
 * PROGRESS_MONITOR through the real `create` (helper VM under TCG): a fake
 * monitor program (bash, `cat >> FILE`) set in the config records the JSON
 * lines; without it the same lines are `[MONITOR] ` lines in the OS log.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, placeImage, runCreate, type CreateSpec, type ScriptRun } from "../lib/deploy.ts";
import { cacheDir, debianImage, type DebianImage } from "../lib/images.ts";

const PASSWORD = "M0nitor-Pw";
const MiB = 1024 * 1024;
const DISK = 3 * 1024 * MiB;

type Line = Record<string, unknown> & { type: string; timestamp: number };
let work: string;
let tmp: string;
let debian: DebianImage;

function freshDisk(name: string): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  Bun.spawnSync(["truncate", "-s", String(DISK), d]);
  return d;
}
function qemuPids(): string[] {
  const p = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" });
  return p.stdout.toString().trim().split("\n").filter(Boolean);
}
/** A fake monitor: records its argv and appends stdin to a file. */
function fakeMonitor(name: string): { program: string; lines: () => Line[]; argv: () => string[] } {
  const out = join(work, `${name}.jsonl`);
  const args = join(work, `${name}.argv`);
  const program = join(work, `${name}.sh`);
  writeFileSync(program, `#!/bin/bash\nprintf '%s\\n' "$@" > '${args}'\ncat >> '${out}'\n`);
  chmodSync(program, 0o755);
  return {
    program,
    lines: () => (existsSync(out) ? readFileSync(out, "utf8").trimEnd().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line) : []),
    argv: () => readFileSync(args, "utf8").trimEnd().split("\n"),
  };
}
async function create(spec: Omit<CreateSpec, "imageDir">): Promise<ScriptRun> {
  const r = await runCreate({ imageDir: join(work, "images"), ...spec, extraEnv: { TMPDIR: tmp } });
  expect(r.output).not.toContain(PASSWORD);
  expect(qemuPids()).toEqual([]);
  expect(readdirSync(tmp)).toEqual([]);
  return r;
}
/** Shape every line must have, in order of time. */
function checkCommon(lines: Line[]) {
  expect(lines.length).toBeGreaterThan(0);
  let last = 0;
  for (const l of lines) {
    expect(typeof l.type).toBe("string");
    expect(typeof l.timestamp).toBe("number");
    expect(l.timestamp).toBeGreaterThanOrEqual(last);
    expect(Math.abs(l.timestamp - Date.now() / 1000)).toBeLessThan(600);
    last = l.timestamp;
  }
}
/** task-start/task-end come in matched pairs, in the task table's order. */
function tasksRun(lines: Line[]): string[] {
  const helper = lines.filter((l) => l.type === "image-helper" && (l.subtype === "task-start" || l.subtype === "task-end"));
  const names: string[] = [];
  for (let i = 0; i < helper.length; i += 2) {
    expect(helper[i]).toMatchObject({ subtype: "task-start" });
    expect(helper[i + 1]).toMatchObject({ subtype: "task-end", task: helper[i]!.task });
    names.push(helper[i]!.task as string);
  }
  return names;
}

beforeAll(async () => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-mon-"));
  tmp = join(work, "tmp");
  mkdirSync(tmp);
  mkdirSync(join(work, "images"));
  debian = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  placeImage(debian.path, join(work, "images", "plain"));
  // A gzip image copies for > 3 s here: several progress messages, size unknown up front.
  const dir = join(cacheDir(), `issue3-${debian.recipeKey}`);
  mkdirSync(dir, { recursive: true });
  const gz = join(dir, "disk.gzip"); // shared with formats.test.ts
  if (!existsSync(gz)) {
    const p = Bun.spawnSync(["gzip", "-1", "-c", debian.path], { stdout: Bun.file(`${gz}.tmp-${process.pid}`) });
    expect(p.exitCode).toBe(0);
    renameSync(`${gz}.tmp-${process.pid}`, gz);
  }
  placeImage(gz, join(work, "images", "packed"));
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("PROGRESS_MONITOR program", () => {
  test("a successful deploy: image-info, copy progress, helper tasks; argv[1] is the instance", async () => {
    const mon = fakeMonitor("ok");
    const r = await create({
      disks: [freshDisk("ok-disk")],
      instance: "mon1.example.org",
      config: { PROGRESS_MONITOR: mon.program },
      osp: { img_id: "packed", img_format: "diskdump", img_passwd: PASSWORD },
    });
    if (r.code !== 0) console.log(r.output);
    expect(r.code).toBe(0);
    expect(r.output).not.toContain("[MONITOR]");
    expect(mon.argv()).toEqual(["mon1.example.org"]);
    const lines = mon.lines();
    checkCommon(lines);
    expect(lines.filter((l) => l.type === "image-error")).toEqual([]);
    const infos = lines.filter((l) => l.type === "image-info").map((l) => l.messages);
    expect(infos[0]).toEqual(["Starting image copy..."]);
    expect(infos.at(-1)).toEqual(["Image customization finished successfully."]);
    for (const i of infos) expect(Array.isArray(i) && i.every((x) => typeof x === "string")).toBe(true);

    const progress = lines.filter((l) => l.type === "image-copy-progress") as (Line & { position: number; total: number; progress: number })[];
    console.log(`[monitor] ${progress.length} progress lines: ${progress.map((p) => p.progress).join(" ")}`);
    expect(progress.length).toBeGreaterThanOrEqual(2); // gzip copy takes > 3 s here
    for (let i = 0; i < progress.length; i++) {
      const p = progress[i]!;
      expect(Number.isInteger(p.position) && Number.isInteger(p.total)).toBe(true);
      expect(p.position).toBeLessThanOrEqual(p.total);
      expect(p.progress).toBeCloseTo((100 * p.position) / p.total, 1);
      if (i > 0) {
        expect(p.position).toBeGreaterThanOrEqual(progress[i - 1]!.position);
        expect(p.timestamp - progress[i - 1]!.timestamp).toBeGreaterThan(i === progress.length - 1 ? -1 : 2.5); // throttled
      }
    }
    expect(progress.at(-1)).toMatchObject({ position: 2048 * MiB, total: 2048 * MiB, progress: 100 });
    // progress lines come between the copy start and the first helper line
    const firstHelper = lines.findIndex((l) => l.type === "image-helper");
    expect(lines.indexOf(progress.at(-1)!)).toBeLessThan(firstHelper);

    const tasks = tasksRun(lines);
    expect(tasks[0]).toBe("FixPartitionTable");
    expect(tasks.at(-1)).toBe("FilesystemResizeAfterUmount"); // the last task of the table (NTFS grows unmounted)
    for (const t of ["MountImage", "AssignHostname", "ChangePassword", "ConfigureNetwork"]) expect(tasks).toContain(t);
  }, 600_000);

  test("a deploy that fails before the copy: one image-error line with the cause", async () => {
    const mon = fakeMonitor("missing");
    const r = await create({
      disks: [freshDisk("bad-disk")],
      instance: "mon2",
      config: { PROGRESS_MONITOR: mon.program },
      osp: { img_id: "no-such-image", img_format: "diskdump" },
    });
    expect(r.code).not.toBe(0);
    const lines = mon.lines();
    checkCommon(lines);
    expect(lines.at(-1)).toMatchObject({ type: "image-error" });
    expect((lines.at(-1)!.messages as string[]).join(" ")).toMatch(/no-such-image not found/);
    expect(lines.filter((l) => l.type === "image-copy-progress")).toEqual([]);
    expect(mon.argv()).toEqual(["mon2"]);
  }, 600_000);

  test("a helper task that fails: image-helper error, then image-error", async () => {
    const mon = fakeMonitor("helperfail");
    const r = await create({
      disks: [freshDisk("bad-disk")],
      config: { PROGRESS_MONITOR: mon.program },
      osp: { img_id: "plain", img_format: "diskdump", img_passwd: PASSWORD, inst_properties: '{"USERS":"root nosuchuser"}' },
    });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/nosuchuser/);
    const lines = mon.lines();
    checkCommon(lines);
    const err = lines.findIndex((l) => l.type === "image-helper" && l.subtype === "error");
    expect(err).toBeGreaterThan(0);
    expect((lines[err]!.messages as string[]).join(" ")).toMatch(/nosuchuser/);
    expect(lines.at(-1)).toMatchObject({ type: "image-error" });
    expect((lines.at(-1)!.messages as string[]).join(" ")).toMatch(/nosuchuser/);
    // the failing task started and never ended
    const started = lines.filter((l) => l.subtype === "task-start").map((l) => l.task);
    const ended = lines.filter((l) => l.subtype === "task-end").map((l) => l.task);
    expect(started.filter((t) => !ended.includes(t))).toEqual(["ChangePassword"]);
  }, 600_000);
});

describe("without PROGRESS_MONITOR", () => {
  test("the same lines appear as [MONITOR] lines in the OS log", async () => {
    const r = await create({
      disks: [freshDisk("log-disk")],
      instance: "mon3",
      osp: { img_id: "plain", img_format: "diskdump", img_passwd: PASSWORD },
    });
    expect(r.code).toBe(0);
    const raw = r.output.split("\n").filter((l) => l.startsWith("[MONITOR] "));
    const lines = raw.map((l) => JSON.parse(l.slice("[MONITOR] ".length)) as Line);
    checkCommon(lines);
    const types = new Set(lines.map((l) => l.type));
    expect([...types].sort()).toEqual(["image-copy-progress", "image-helper", "image-info"]);
    expect(lines.filter((l) => l.type === "image-copy-progress").at(-1)).toMatchObject({ position: 2048 * MiB, total: 2048 * MiB, progress: 100 });
    expect(tasksRun(lines)).toContain("ChangePassword");
  }, 600_000);
});

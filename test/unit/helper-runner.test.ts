/** Task table, runner skip rules, props, channels and main() end to end on an image file. */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROTOCOL_VERSION, decodeMonitor, decodeParams, encodeParams, MONITOR_MAX_LINES, type MonitorEvent } from "../../src/protocol.ts";
import { makeProps } from "../../helper/props.ts";
import { openChannels } from "../../helper/channels.ts";
import { runTasks, skipReason } from "../../helper/runner.ts";
import { helperMain } from "../../helper/main.ts";
import type { Task } from "../../helper/task.ts";
import { fakeCtx, fakeRoot, type FakeRoot } from "./helper-fixtures.ts";

let fr: FakeRoot | undefined;
let tmp: string | undefined;
afterEach(() => {
  fr?.cleanup();
  fr = undefined;
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
});

const T = (name: string, extra: Partial<Task> = {}, run: Task["run"] = async () => {}): Task => ({ name, mounted: true, excludable: true, run, ...extra });

describe("props", () => {
  test("yes/no rules of the original", () => {
    const w: string[] = [];
    const p = makeProps({ A: "Yes", B: "off", C: "", D: "maybe", e: "1" }, (m) => w.push(m));
    expect([p.bool("a"), p.bool("B"), p.bool("C"), p.bool("D"), p.bool("E"), p.bool("UNSET")]).toEqual([true, false, false, true, true, false]);
    expect(w.length).toBe(2);
    expect(p.get("e")).toBe("1");
  });
});

describe("parameter value rules (src/protocol.ts, run in the guest by decodeParams)", () => {
  const doc = (extra: Record<string, unknown>) =>
    JSON.stringify({ protocol: PROTOCOL_VERSION, mode: "create", hostname: "vm1", imgFormat: "diskdump", properties: {}, disks: [{ index: 0, serial: "snf-disk0" }], ...extra });
  test("base64, crypt hash and product key are checked once, at the contract", () => {
    expect(() => decodeParams(doc({ cloudUserdata: "not base64!!" }))).toThrow(/^bad parameter document: .*not base64/);
    expect(() => decodeParams(doc({ personality: [{ path: "/a", contents: "@@@" }] }))).toThrow(/not base64/);
    expect(() => decodeParams(doc({ passwordHash: "$6$salt$x:y" }))).toThrow(/not a crypt\(3\) hash/);
    expect(() => decodeParams(doc({ osProductKey: "abc" }))).toThrow(/XXXXX-XXXXX/);
    const ok = decodeParams(doc({ cloudUserdata: "aGk=", passwordHash: "$6$salt$hash", osProductKey: "abcde-12345-fghij-67890-klmno" }));
    expect([ok.cloudUserdata, ok.passwordHash, ok.osProductKey]).toEqual(["aGk=", "$6$salt$hash", "ABCDE-12345-FGHIJ-67890-KLMNO"]);
  });
});

describe("skipReason", () => {
  const props = (r: Record<string, string>) => makeProps(r);
  test("mode, excludes, cloud-init and families", () => {
    const mnt = T("AssignHostname", { modes: ["create", "rename"] });
    expect(skipReason(mnt, props({}), "create", "linux")).toBeUndefined();
    expect(skipReason(T("ChangePassword"), props({}), "rename", "linux")).toBe("not run on rename");
    expect(skipReason(mnt, props({}), "rename", "linux")).toBeUndefined();
    expect(skipReason(mnt, props({ EXCLUDE_ALL_TASKS: "yes" }), "create", "linux")).toBe("EXCLUDE_ALL_TASKS");
    expect(skipReason(mnt, props({ EXCLUDE_MOUNTED_TASKS: "yes" }), "create", "linux")).toBe("EXCLUDE_MOUNTED_TASKS");
    expect(skipReason(T("X", { mounted: false }), props({ EXCLUDE_MOUNTED_TASKS: "yes" }), "create", "linux")).toBeUndefined();
    expect(skipReason(mnt, props({ exclude_task_assignhostname: "true" }), "create", "linux")).toBe("EXCLUDE_TASK_AssignHostname");
    expect(skipReason(T("MountImage", { excludable: false }), props({ EXCLUDE_TASK_MOUNTIMAGE: "yes" }), "create", "linux")).toBeUndefined();
    expect(skipReason(T("R", { fsResize: true }), props({ EXCLUDE_FILESYSTEMRESIZE_TASKS: "1" }), "create", "linux")).toBe("EXCLUDE_FILESYSTEMRESIZE_TASKS");
    expect(skipReason(T("C", { cloudInitSkip: true }), props({ CLOUD_INIT: "yes" }), "create", "linux")).toStartWith("CLOUD_INIT");
    expect(skipReason(T("L", { families: ["linux"] }), props({}), "create", "windows")).toBe("not for windows");
  });
});

describe("runTasks", () => {
  test("events in order; first failure stops, cleans up and names the task", async () => {
    fr = fakeRoot();
    const events: MonitorEvent[] = [];
    let cleaned = 0;
    const ran: string[] = [];
    const tasks = [
      T("First", {}, async () => void ran.push("First")),
      T("Skipped", {}, async () => void ran.push("Skipped")),
      T("Boom", {}, async () => {
        throw new Error("disk on fire\nsecond line");
      }),
      T("Never", {}, async () => void ran.push("Never")),
    ];
    const ctx = fakeCtx(fr, { properties: { EXCLUDE_TASK_SKIPPED: "yes" } });
    const r = await runTasks(tasks, ctx, { monitor: (e) => events.push(e), cleanup: async () => void cleaned++ });
    // flattened, not cut: a cause after a newline the image smuggled in still reaches the host
    expect(r).toEqual({ ok: false, error: "Boom: disk on fire | second line" });
    expect(ran).toEqual(["First"]);
    expect(cleaned).toBe(1);
    expect(events.map((e) => e.kind + ":" + ("task" in e ? e.task : e.text))).toEqual([
      "TASK_START:First",
      "TASK_END:First",
      "TASK_SKIP:Skipped",
      "TASK_START:Boom",
      "ERROR:Boom: disk on fire | second line",
    ]);
  });

  test("the table has the original's order and unique names", async () => {
    const { TASKS } = await import("../../helper/tasks/index.ts");
    const names = TASKS.map((t) => t.name);
    expect(names[2]).toBe("MountImage");
    expect(names.at(-2)).toBe("UmountImage");
    expect(names.at(-1)).toBe("FilesystemResizeAfterUmount"); // the original's task 81: NTFS grows unmounted
    expect(new Set(names).size).toBe(names.length);
    expect(names.indexOf("EnforcePersonality")).toBeGreaterThan(names.indexOf("DeleteSSHKeys"));
  });
});

describe("channels", () => {
  test("result and monitor lines decode; monitor capped with room for a final ERROR", () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-ch-"));
    const env = { SNF_HELPER_RESULT: path.join(tmp, "result"), SNF_HELPER_MONITOR: path.join(tmp, "monitor") };
    const ch = openChannels(env);
    for (let i = 0; i < 150; i++) ch.monitor({ kind: "TASK_START", task: `T${i}` });
    ch.monitor({ kind: "ERROR", text: "last words" });
    ch.result({ ok: false, error: "X: boom\nmore" });
    ch.result({ ok: true }); // ignored: one result only
    const lines = fs.readFileSync(env.SNF_HELPER_MONITOR, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(MONITOR_MAX_LINES);
    expect(lines.map(decodeMonitor).at(-1)).toEqual({ kind: "ERROR", text: "last words" });
    expect(fs.readFileSync(env.SNF_HELPER_RESULT, "utf8")).toBe("ERROR: X: boom | more\n");
  });
});

describe("helperMain", () => {
  function env(extra: Record<string, string> = {}) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-main-"));
    return {
      SNF_HELPER_RESULT: path.join(tmp, "result"),
      SNF_HELPER_MONITOR: path.join(tmp, "monitor"),
      SNF_HELPER_ROOT: path.join(tmp, "mnt"),
      TMPDIR: tmp,
      ...extra,
    };
  }
  const params = (props: Record<string, string> = {}) =>
    encodeParams({ protocol: PROTOCOL_VERSION, mode: "create", hostname: "vm1", imgFormat: "diskdump", properties: props, disks: [{ index: 0, serial: "snf-disk0" }], password: "TopSecret" });

  test("bad parameter document → one ERROR line, nothing left in TMPDIR", async () => {
    const e = env();
    fs.writeFileSync(path.join(tmp!, "params"), "{not json");
    const r = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "params") });
    expect(r.ok).toBe(false);
    expect(fs.readFileSync(e.SNF_HELPER_RESULT, "utf8")).toBe("ERROR: reading parameters: parameter document is not JSON\n");
    const missing = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "nope") });
    expect(missing).toEqual({ ok: false, error: expect.stringContaining("no parameter document") });
  });

  test("disk with that serial not found → ERROR naming it; scratch removed", async () => {
    const e = env();
    fs.writeFileSync(path.join(tmp!, "params"), params());
    const sys = path.join(tmp!, "sys");
    fs.mkdirSync(path.join(sys, "vda"), { recursive: true });
    fs.writeFileSync(path.join(sys, "vda/serial"), "snf-tools\n");
    const r = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "params"), SNF_HELPER_SYS_BLOCK: sys });
    expect(r).toEqual({ ok: false, error: "finding the instance disk: no disk with serial snf-disk0 found" });
    expect(fs.readdirSync(tmp!).filter((n) => n.startsWith("snf-helper-"))).toEqual([]);
  });

  test("EXCLUDE_ALL_TASKS on an image file → SUCCESS and a TASK_SKIP per task", async () => {
    const e = env();
    const disk = path.join(tmp!, "disk.img");
    fs.writeFileSync(path.join(tmp!, "params"), params({ EXCLUDE_ALL_TASKS: "yes" }));
    fs.closeSync(fs.openSync(disk, "w"));
    fs.truncateSync(disk, 16 << 20);
    Bun.spawnSync(["sfdisk", "-q", disk], { stdin: Buffer.from("label: dos\n,,83\n") });
    const r = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "params"), SNF_HELPER_DISK: disk });
    expect(r).toEqual({ ok: true });
    expect(fs.readFileSync(e.SNF_HELPER_RESULT, "utf8")).toBe("SUCCESS\n");
    const mon = fs.readFileSync(e.SNF_HELPER_MONITOR, "utf8").trim().split("\n").map(decodeMonitor);
    expect(mon.every((m) => m.kind === "TASK_SKIP")).toBe(true);
    const { TASKS } = await import("../../helper/tasks/index.ts");
    expect(mon.length).toBe(TASKS.length);
    expect(fs.readFileSync(e.SNF_HELPER_MONITOR, "utf8")).not.toContain("TopSecret");
  });

  test("no root filesystem on the disk → ERROR asking for ROOT_PARTITION/OSFAMILY", async () => {
    const e = env();
    const disk = path.join(tmp!, "disk.img");
    fs.writeFileSync(path.join(tmp!, "params"), params());
    fs.closeSync(fs.openSync(disk, "w"));
    fs.truncateSync(disk, 16 << 20);
    Bun.spawnSync(["sfdisk", "-q", disk], { stdin: Buffer.from("label: dos\n,,83\n") });
    const r = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "params"), SNF_HELPER_DISK: disk });
    expect(r).toEqual({ ok: false, error: "finding the root partition: cannot find the root partition; set ROOT_PARTITION and OSFAMILY" });
    const bad = await helperMain({ ...e, SNF_HELPER_PARAMS: path.join(tmp!, "params2"), SNF_HELPER_DISK: disk });
    expect(bad.ok).toBe(false);
  });
});

/**
 * Real helper VM runs under TCG: build the helper image with the fixture
 * helper, boot it against a small raw disk and check what comes back.
 * Needs root (qemu -runas), the Debian mirror on a cold kernel cache, and
 * roughly a minute.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildHelperImage } from "../../src/helper-image/build.ts";
import { loadHelperImage } from "../../src/helper-image/load.ts";
import { type HelperVmOptions, runHelperVm } from "../../src/vm/qemu.ts";
import { startHelperVm } from "../../src/vm/start.ts";
import { PROTOCOL_VERSION, encodeParams, type MonitorEvent } from "../../src/protocol.ts";

const work = fs.mkdtempSync(path.join(process.env.SNF_TEST_TMP ?? "/var/tmp", "snf-helper-vm-test-"));
const outDir = path.join(work, "helper");
const disk = path.join(work, "disk0.raw");
let image: ReturnType<typeof loadHelperImage>;

beforeAll(async () => {
  const fixture = path.join(work, "echo-helper");
  const c = Bun.spawnSync(["bun", "build", "--compile", path.join(import.meta.dir, "../fixtures/echo-helper.ts"), "--outfile", fixture], { stderr: "pipe" });
  if (c.exitCode !== 0) throw new Error(`fixture build failed: ${c.stderr}`);
  const t0 = performance.now();
  await buildHelperImage({ outDir, helperBinary: fixture, version: "0.0.0-test", log: (l) => console.log(`build: ${l}`) });
  console.log(`helper image build: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  image = loadHelperImage(outDir);
  fs.writeFileSync(disk, "");
  fs.truncateSync(disk, 64 << 20);
}, 300_000);

/** A helper image whose helper says it is ready and never wakes (fixtures/sleepy-helper.ts). */
async function sleepyImage(): Promise<ReturnType<typeof loadHelperImage>> {
  const bin = path.join(work, "sleepy-helper");
  const c = Bun.spawnSync(["bun", "build", "--compile", path.join(import.meta.dir, "../fixtures/sleepy-helper.ts"), "--outfile", bin], { stderr: "pipe" });
  if (c.exitCode !== 0) throw new Error(`fixture build failed: ${c.stderr}`);
  const out = path.join(work, "helper-sleepy");
  await buildHelperImage({ outDir: out, helperBinary: bin, version: "0.0.0-test", log: () => {} });
  return loadHelperImage(out);
}

/** Aborts once a state newer than `since` is saved in `dir` (the cold boot's work is then done). */
function abortOnceSaved(dir: string, since: number): AbortController {
  const ac = new AbortController();
  const t = setInterval(() => {
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith(".state") && !n.startsWith("."));
    } catch {}
    if (names.some((n) => fs.statSync(path.join(dir, n)).mtimeMs > since)) {
      clearInterval(t);
      setTimeout(() => ac.abort(), 300);
    }
  }, 100);
  ac.signal.addEventListener("abort", () => clearInterval(t));
  setTimeout(() => ac.abort(), 120_000);
  return ac;
}

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function params(mode: string): string {
  return encodeParams({
    protocol: PROTOCOL_VERSION, mode: "create", hostname: `fixture-${mode}`, imgFormat: "diskdump",
    properties: { FIXTURE_MODE: mode }, disks: [{ index: 0, serial: "snf-disk0" }],
  });
}

async function run(mode: string, over: Partial<HelperVmOptions> = {}) {
  const consoleLines: string[] = [];
  const events: MonitorEvent[] = [];
  const outcome = await runHelperVm({
    image, disks: [{ path: disk, serial: "snf-disk0" }], params: params(mode),
    accel: "tcg", memoryMiB: 256, user: "nobody", softTimeoutSec: 120, hardTimeoutSec: 5,
    onConsoleLine: (l) => consoleLines.push(l), onMonitorEvent: (e) => events.push(e), ...over,
  });
  console.log(`helper VM ${mode}: ${(outcome.durationMs / 1000).toFixed(2)} s wall, result ${JSON.stringify(outcome.result)}, timedOut ${outcome.timedOut}`);
  return { outcome, consoleLines, events };
}

function ourQemus(): string {
  return Bun.spawnSync(["pgrep", "-P", String(process.pid), "-f", "qemu-system"]).stdout.toString().trim();
}

describe("helper VM (TCG)", () => {
  test("image layout", () => {
    expect(image.manifest.kernel).toMatch(/-amd64$/);
    expect(fs.statSync(image.initrd).size).toBeLessThan(16 << 20);
    expect(fs.readdirSync(outDir).sort()).toEqual(["initrd.cpio", "manifest.json", "tools.img", "vmlinux"]);
    expect(fs.readdirSync(work).filter((f) => f.startsWith(".helper.tmp-"))).toEqual([]);
  });

  test("SUCCESS with -m 256, params seen, monitor events parsed", async () => {
    const { outcome, consoleLines, events } = await run("ok");
    expect(outcome.result).toEqual({ ok: true });
    expect(outcome.exitCode).toBe(0);
    expect(outcome.timedOut).toBeNull();
    expect(outcome.monitorError).toBeUndefined();
    const echoed = consoleLines.find((l) => l.startsWith("FIXTURE-PARAMS "));
    expect(echoed).toBeDefined();
    expect(JSON.parse(echoed!.slice("FIXTURE-PARAMS ".length))).toMatchObject({ hostname: "fixture-ok", properties: { FIXTURE_MODE: "ok" } });
    expect(events).toEqual([
      { kind: "TASK_START", task: "FixtureTask" },
      { kind: "INFO", text: "fixture mode ok" },
      { kind: "TASK_END", task: "FixtureTask", ms: 5 },
    ]);
    expect(ourQemus()).toBe("");
  }, 180_000);

  test("helper exiting 1 without a result yields the shim's ERROR line", async () => {
    const { outcome } = await run("exit1");
    expect(outcome.result).toEqual({ ok: false, error: "helper exited with code 1" });
  }, 180_000);

  test("a monitor flood ends monitoring but not the verdict", async () => {
    const { outcome, events } = await run("flood");
    expect(outcome.result).toEqual({ ok: true });
    expect(outcome.monitorError).toContain("more than");
    expect(events.length).toBeLessThanOrEqual(100);
  }, 180_000);

  test("soft timeout kills the VM and leaves no qemu", async () => {
    const { outcome } = await run("sleep", { softTimeoutSec: 2, hardTimeoutSec: 5 });
    expect(outcome.timedOut).toBe("soft");
    expect(outcome.result).toBeNull();
    expect(outcome.durationMs).toBeLessThan(30_000);
    expect(ourQemus()).toBe("");
  }, 180_000);

  test("a guest that reports SUCCESS but never powers off is stopped after the grace and judged by its result", async () => {
    const { outcome } = await run("linger", { softTimeoutSec: 120, poweroffGraceMs: 2000 });
    expect(outcome.result).toEqual({ ok: true });
    expect(outcome.timedOut).toBeNull();
    expect(outcome.aborted).toBe(false);
    expect(outcome.durationMs).toBeLessThan(100_000);
    expect(ourQemus()).toBe("");
  }, 180_000);

  test("abort kills the VM", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 1500);
    const { outcome } = await run("sleep", { signal: ac.signal });
    expect(outcome.aborted).toBe(true);
    expect(outcome.result).toBeNull();
    expect(ourQemus()).toBe("");
  }, 180_000);

  test("no tools disk: shim 1 reports ERROR and powers off", async () => {
    const bad = path.join(work, "empty-tools.img");
    fs.writeFileSync(bad, Buffer.alloc(1 << 20));
    const { outcome } = await run("ok", { image: { ...image, tools: bad } });
    expect(outcome.result).toEqual({ ok: false, error: expect.stringContaining("cannot mount the tools disk") });
    expect(outcome.timedOut).toBeNull();
  }, 180_000);

  test("a resumed helper that never wakes: the run boots cold instead, and the state is replaced", async () => {
    const sleepy = await sleepyImage();
    const snaps = path.join(work, "snapshots-sleepy");
    const base: HelperVmOptions = {
      image: sleepy, disks: [{ path: disk, serial: "snf-disk0" }], params: params("ok"),
      accel: "tcg", memoryMiB: 256, user: "nobody", softTimeoutSec: 120, hardTimeoutSec: 5, onConsoleLine: () => {},
    };
    // 1: no state yet: a cold boot saves one (then this run is stopped: its helper never wakes)
    let t0 = Date.now();
    const first = await startHelperVm({ ...base, signal: abortOnceSaved(snaps, t0).signal }, snaps, "auto");
    expect(first.start.mode).toBe("cold");
    expect(first.saved).toBeDefined();
    expect(first.fellBack).toBeUndefined();
    const firstState = fs.statSync(first.saved!.state);
    // 2: the resume gets its disk but does not wake within the wake limit: removed, booted cold, saved anew
    t0 = Date.now();
    const second = await startHelperVm({ ...base, wakeTimeoutMs: 2000, signal: abortOnceSaved(snaps, firstState.mtimeMs).signal }, snaps, "auto");
    expect(second.fellBack).toBe("the resumed helper VM did not wake within 2 s of getting its disks");
    expect(second.start.mode).toBe("cold");
    expect(second.saved).toBeDefined();
    expect(fs.statSync(second.saved!.state).mtimeMs).toBeGreaterThan(firstState.mtimeMs);
    expect(ourQemus()).toBe("");
  }, 300_000);

  test("qemu failing to start is reported, nothing left behind", async () => {
    const runDirs = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith("snf-vm-"));
    const before = new Set(runDirs());
    const { outcome } = await run("ok", { user: "no-such-user-snf" });
    expect(outcome.result).toBeNull();
    expect(outcome.qemuError).toContain("no-such-user-snf");
    // other helper VMs (other users of this machine) may be running: only ours must be gone
    const inUse = Bun.spawnSync(["pgrep", "-af", "qemu-system"]).stdout.toString();
    expect(runDirs().filter((d) => !before.has(d) && !inUse.includes(d))).toEqual([]);
  }, 60_000);
});

/**
 * src/monitor.ts: the original's JSON monitor lines (type + timestamp), copy
 * progress throttling, helper event mapping, and delivery to a real
 * PROGRESS_MONITOR program (argv[1] = instance) or as `[MONITOR] ` lines.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openMonitor } from "../../src/monitor.ts";

const MONITOR_TS = resolve(import.meta.dir, "../../src/monitor.ts");
const dir = mkdtempSync(join(tmpdir(), "snf-monitor-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function collect(intervalMs = 1000) {
  const lines: Record<string, unknown>[] = [];
  const m = openMonitor({ program: "", instance: "vm1", intervalMs, write: (l) => lines.push(JSON.parse(l)) });
  return { m, lines };
}

describe("message shapes", () => {
  test("every line is one JSON object with type and a timestamp in seconds", () => {
    const { m, lines } = collect();
    const t0 = Date.now() / 1000;
    m.info("Starting image copy...");
    m.send({ type: "image-error", messages: ["boom"] });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ type: "image-info", messages: ["Starting image copy..."] });
    expect(lines[1]).toMatchObject({ type: "image-error", messages: ["boom"] });
    for (const l of lines) {
      expect(typeof l.timestamp).toBe("number");
      expect(Math.abs((l.timestamp as number) - t0)).toBeLessThan(5);
    }
  });

  test("copy progress: position, total, progress in percent; throttled, the final one always sent", () => {
    const { m, lines } = collect(60_000);
    m.copyProgress(0, 400);
    m.copyProgress(100, 400); // within the interval: dropped
    m.copyProgress(200, 400);
    m.copyProgress(400, 400, true);
    expect(lines.map((l) => [l.type, l.position, l.total, l.progress])).toEqual([
      ["image-copy-progress", 0, 400, 0],
      ["image-copy-progress", 400, 400, 100],
    ]);
    const { m: m2, lines: l2 } = collect(0);
    m2.copyProgress(1, 3);
    m2.copyProgress(0, 0);
    // a compressed image is measured against the disk size; its end is still 100 %
    m2.copyProgress(2048, 3072, true);
    expect(l2.map((l) => [l.position, l.total, l.progress])).toEqual([[1, 3, 33.33], [0, 0, 100], [2048, 2048, 100]]);
  });

  test("helper events: task-start/task-end/warning/error; skips and info are not monitor messages", () => {
    const { m, lines } = collect();
    m.helperEvent({ kind: "TASK_START", task: "MountImage" });
    m.helperEvent({ kind: "TASK_END", task: "MountImage", ms: 12 });
    m.helperEvent({ kind: "TASK_SKIP", task: "AddSwap", reason: "x" });
    m.helperEvent({ kind: "WARNING", text: "careful" });
    m.helperEvent({ kind: "ERROR", text: "broken" });
    expect(lines.map(({ timestamp: _t, ...rest }) => rest)).toEqual([
      { type: "image-helper", subtype: "task-start", task: "MountImage" },
      { type: "image-helper", subtype: "task-end", task: "MountImage" },
      { type: "image-helper", subtype: "warning", messages: ["careful"] },
      { type: "image-helper", subtype: "error", messages: ["broken"] },
    ]);
  });
});

describe("delivery", () => {
  test("a PROGRESS_MONITOR program gets the lines on stdin and the instance name as argv[1]", async () => {
    const out = join(dir, "lines");
    const args = join(dir, "args");
    const prog = join(dir, "monitor.sh");
    writeFileSync(prog, `#!/bin/bash\nprintf '%s\\n' "$#" "$@" > ${args}\ncat >> ${out}\n`);
    chmodSync(prog, 0o755);
    const m = openMonitor({ program: prog, instance: "web1.example.org" });
    m.info("one");
    m.copyProgress(5, 10);
    await m.close(); // waits for the program to finish reading
    expect(readFileSync(args, "utf8")).toBe("1\nweb1.example.org\n");
    const got = readFileSync(out, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(got.map((g) => g.type)).toEqual(["image-info", "image-copy-progress"]);
    expect(got[1]).toMatchObject({ position: 5, total: 10, progress: 50 });
  });

  /** Runs a snippet in a child bun so that its stderr can be read. */
  async function child(snippet: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const code = `import { openMonitor } from ${JSON.stringify(MONITOR_TS)};\n${snippet}`;
    const p = Bun.spawn([process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe", cwd: dir });
    const [stdout, stderr, rc] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code: rc, stdout, stderr };
  }

  test("without PROGRESS_MONITOR the lines go to stderr as [MONITOR] lines", async () => {
    const r = await child(`const m = openMonitor({ program: "", instance: "x" }); m.info("hello"); m.copyProgress(1, 2, true); await m.close();`);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^\[MONITOR\] \{.*"timestamp":/);
    expect(JSON.parse(lines[0]!.slice(10))).toMatchObject({ type: "image-info", messages: ["hello"] });
  });

  test("a missing program: a warning, then [MONITOR] lines; nothing crashes", async () => {
    const r = await child(`const m = openMonitor({ program: "/nonexistent/monitor", instance: "x" }); m.info("hello"); await m.close();`);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/PROGRESS_MONITOR \/nonexistent\/monitor could not start/);
    expect(r.stderr).toMatch(/\[MONITOR\] \{"type":"image-info"/);
  });

  test("a program that exits at once: the deployment goes on and the lines fall back to stderr", async () => {
    const r = await child(
      `const m = openMonitor({ program: "/bin/true", instance: "x" }); await Bun.sleep(300);
       for (let i = 0; i < 50; i++) { m.info("line " + i); await Bun.sleep(2); }
       await m.close(); console.log("survived");`,
    );
    expect(r.stdout.trim()).toBe("survived");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[MONITOR\] \{"type":"image-info","messages":\["line 49"\]/);
  });

  test("a program that never reads nor exits does not hang close() forever", async () => {
    const prog = join(dir, "stuck.sh");
    writeFileSync(prog, "#!/bin/sh\nexec sleep 60\n");
    chmodSync(prog, 0o755);
    const m = openMonitor({ program: prog, instance: "x" });
    m.info("hi");
    const t0 = performance.now();
    await m.close();
    expect(performance.now() - t0).toBeLessThan(7000);
    expect(existsSync(prog)).toBe(true);
  }, 10_000);
});

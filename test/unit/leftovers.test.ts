/**
 * The sweep of dead runs' leftovers, with real processes: a dead owner's
 * directories and helper VM processes go, a live run's (same pid and start
 * time) stay, a reused pid does not protect a dead run, and names it cannot
 * attribute or entries of another user are never touched.
 */
import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describeSweep, processStartTime, runTag, runTempDir, sweepLeftovers } from "../../src/leftovers.ts";

const base = fs.mkdtempSync(path.join(os.tmpdir(), "leftovers-test-"));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

describe("leftovers", () => {
  test("run tag and start time", () => {
    expect(runTag()).toMatch(new RegExp(`^${process.pid}-\\d+$`));
    expect(processStartTime(process.pid)).toBeGreaterThan(0);
    expect(processStartTime(2 ** 22 + 1)).toBeNull();
  });

  test("directories: dead owner swept, live owner kept, reused pid swept, unattributable or foreign kept", async () => {
    const dead = await deadPid();
    const mine = runTempDir("vm", base);
    fs.writeFileSync(path.join(mine, "console.sock"), "");
    const mk = (name: string) => {
      fs.mkdirSync(path.join(base, name));
      fs.writeFileSync(path.join(base, name, "f"), "x");
      return path.join(base, name);
    };
    const deadDir = mk(`snf-image-${dead}-12345-abcDEF`);
    const reused = mk(`snf-vm-${process.pid}-${processStartTime(process.pid)! + 1}-a1b2c3`);
    const oldStyle = mk("snf-image-Xy12ab");
    const foreign = mk(`snf-vm-${dead}-1-zzzzzz`);
    fs.chownSync(foreign, 65534, 65534);
    const r = sweepLeftovers([base]);
    expect(r.dirs.sort()).toEqual([deadDir, reused].sort());
    expect(fs.existsSync(mine)).toBe(true);
    expect(fs.existsSync(oldStyle)).toBe(true);
    expect(fs.existsSync(foreign)).toBe(true);
    expect(fs.existsSync(deadDir) || fs.existsSync(reused)).toBe(false);
    expect(describeSweep(r)).toMatch(/^leftovers of dead runs: removed 2 temporary directories \(snf-/);
    expect(describeSweep({ dirs: [], pids: [] })).toBeNull();
  });

  test("helper VM processes of a dead run are killed, a live run's are not", async () => {
    const dead = await deadPid();
    const arg = (tag: string) => `socket,id=console,path=/nonexistent/snf-vm-${tag}-qWe123/console.sock`;
    const orphan = Bun.spawn(["sh", "-c", "sleep 60", arg(`${dead}-777`)]);
    const live = Bun.spawn(["sh", "-c", "sleep 60", arg(runTag())]);
    try {
      await Bun.sleep(50);
      const r = sweepLeftovers([base]);
      expect(r.pids).toContain(orphan.pid);
      expect(r.pids).not.toContain(live.pid);
      expect(await orphan.exited).not.toBe(0);
      expect(orphan.signalCode).toBe("SIGKILL");
      expect(live.exitCode).toBeNull();
      expect(describeSweep(r)).toContain(`killed 1 orphan helper VM process (pid ${orphan.pid})`);
    } finally {
      live.kill("SIGKILL");
      orphan.kill("SIGKILL");
    }
  });
});

/**
 * `create` killed, cancelled or timed out at every phase, and several creates
 * at once: real `create` processes as Ganeti runs them, the built helper VM
 * under TCG, a real HTTP server on 127.0.0.1 for the slow phases. After each
 * case: exit 1 with one last line naming the cause (where it fails), and no
 * qemu, no loop device, no temp file or directory, no secret under TMPDIR.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { leftovers, placeImage, qemuProper, runCreate, spawnOsScript, until, type CreateSpec } from "../lib/deploy.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Lifecycle-Pa55word";
let work: string;
let imageDir: string;
/** TMPDIR of every create here: whatever stays in it is a leftover. */
let runTmp: string;
let image: DebianImage;
let server: ReturnType<typeof Bun.serve>;
let configHits = 0;
/** Secrets that must never be found on disk: the password, any SSH private key. */
const SECRETS = [PASSWORD, "PRIVATE KEY"];
const left = (secrets: string[] = SECRETS) => leftovers(work, runTmp, secrets);

beforeAll(async () => {
  work = mkdtempSync(join("/var/tmp", "snf-life-"));
  runTmp = join(work, "tmp");
  imageDir = join(work, "images");
  mkdirSync(runTmp);
  mkdirSync(imageDir);
  image = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", sizeMiB: 1536 });
  placeImage(image.path, join(imageDir, "small"));
  const size = Bun.file(image.path).size;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    fetch(req) {
      const u = new URL(req.url);
      if (u.pathname === "/hang") {
        configHits++;
        return new Promise<Response>(() => {}); // never answers
      }
      if (u.pathname === "/slow.img") {
        if (req.method === "HEAD") return new Response(null, { headers: { "content-length": String(size) } });
        // the real image, 1 MiB at once then 64 KiB every 200 ms: the copy lasts as long as the test wants
        const fd = openSync(image.path, "r");
        let pos = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (pos >= 1 << 20) await Bun.sleep(200);
            const buf = new Uint8Array(pos < 1 << 20 ? 1 << 20 : 64 << 10);
            const n = readSync(fd, buf, 0, buf.length, pos);
            pos += n;
            if (n === 0) {
              closeSync(fd);
              c.close();
            } else c.enqueue(buf.subarray(0, n));
          },
          cancel() {
            closeSync(fd);
          },
        });
        return new Response(body, { headers: { "content-length": String(size) } });
      }
      return new Response("not found", { status: 404 });
    },
  });
}, 1_800_000);

afterAll(() => {
  server?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

function freshDisk(name: string, size = "1600M"): string {
  const d = join(work, name);
  rmSync(d, { force: true });
  Bun.spawnSync(["truncate", "-s", size, d]);
  return d;
}

function spec(over: { disk?: string; osp?: Record<string, string>; config?: Record<string, string>; instance?: string } = {}): CreateSpec {
  return {
    disks: [over.disk ?? freshDisk("disk")],
    instance: over.instance ?? "life.example.org",
    imageDir,
    extraEnv: { TMPDIR: runTmp },
    config: { HELPER_SOFT_TIMEOUT: "120", HELPER_HARD_TIMEOUT: "10", ...over.config },
    osp: { img_id: "small", img_format: "diskdump", img_passwd: PASSWORD, ...over.osp },
  };
}

/** Nothing of any run is left: no qemu (or its leash), no loop device, no child, nothing in TMPDIR, no secret. */
async function expectClean(secrets: string[] = SECRETS) {
  // the leash dies with its run; give the kernel a moment to reap it
  expect(await until(() => left().qemu.length === 0, 5000)).not.toBeNull();
  expect(left(secrets)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
}

function expectOneLineFailure(r: { code: number; lastLine: string; output: string }, cause: RegExp) {
  expect(r.code).toBe(1);
  expect(r.lastLine).toMatch(/^snf-image create: ERROR: /);
  expect(r.lastLine).toMatch(cause);
  expect(r.output).not.toContain(PASSWORD);
}

/** Start create and wait until its helper VM runs (qemu proper exists). */
/**
 * A qemu that starts with its CPU stopped (-S), so the guest can never finish before a timeout
 * however fast the helper gets. With `ignoreTerm`, behind a wrapper that ignores SIGTERM and puts
 * qemu in its own session, out of reach of any process-group signal: only the PID namespace
 * teardown can still kill it.
 */
function pausedQemu(name: string, ignoreTerm = false): string {
  const wrapper = join(work, name);
  const body = ignoreTerm ? `trap '' TERM\nsetsid qemu-system-x86_64 "$@" -S &\nwait $!\n` : `exec qemu-system-x86_64 "$@" -S\n`;
  writeFileSync(wrapper, `#!/bin/sh\n${body}`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

async function createUntilHelper(s: CreateSpec) {
  const run = spawnOsScript(s);
  await run.waitFor(/helper VM: (kvm|tcg)/);
  const seen = await until(() => qemuProper(work).length > 0, 60_000);
  expect(seen).not.toBeNull();
  return run;
}

describe("create killed with SIGKILL", () => {
  test("during the copy: nothing is left, no secret on disk", async () => {
    const run = spawnOsScript(spec({ osp: { img_id: `http://127.0.0.1:${server.port}/slow.img` } }));
    await run.waitFor(/Starting image copy/);
    await Bun.sleep(300); // host keys are being made now
    run.proc.kill("SIGKILL");
    await run.done;
    expect(run.proc.signalCode).toBe("SIGKILL");
    // ssh-keygen runs on a leash too (pdeathsig, private tmpfs)
    expect(await until(() => Bun.spawnSync(["pgrep", "-f", "snf-hostkeys"]).exitCode !== 0, 5000)).not.toBeNull();
    await expectClean();
  }, 120_000);

  test("during the helper: qemu is gone at once, no secret was ever on disk, the next run sweeps", async () => {
    const run = await createUntilHelper(spec({ config: { HELPER_SOFT_TIMEOUT: "120", HELPER_HARD_TIMEOUT: "10" } }));
    const [qemu] = qemuProper(work);
    // qemu's environment: nothing from Ganeti, nothing OSP_*
    const environ = readFileSync(`/proc/${qemu}/environ`, "utf8").split("\0").filter(Boolean);
    expect(environ.map((e) => e.split("=")[0]).sort()).toEqual(["LANG", "PATH"]);
    // the parameters (password, host keys) are in a memfd, not in any file
    expect(readlinkSync(`/proc/${qemu}/fd/3`)).toMatch(/^\/memfd:snf-image-params/);
    expect(left().secretIn).toEqual([]);

    const t0 = performance.now();
    run.proc.kill("SIGKILL");
    const gone = await until(() => left().qemu.length === 0, 130_000, 2);
    console.log(`SIGKILL of create during the helper: qemu and its leash gone ${gone === null ? "never" : `${(performance.now() - t0).toFixed(0)} ms after the kill`}`);
    expect(gone).not.toBeNull();
    await run.done;
    // what a SIGKILL cannot remove: the socket directory, named for its dead owner; no secret
    const after = left();
    expect(after).toEqual({ qemu: [], loops: [], children: [], temp: [expect.stringMatching(new RegExp(`^snf-vm-${run.proc.pid}-\\d+-\\w{6}$`))], secretIn: [] });

    // the next run (here one that fails early) removes it and says so in one line
    const next = await runCreate(spec({ osp: { img_id: "no-such-image" } }));
    expectOneLineFailure(next, /no-such-image not found/);
    expect(next.output).toMatch(new RegExp(`leftovers of dead runs: removed 1 temporary directory \\(snf-vm-${run.proc.pid}-`));
    await expectClean();
  }, 300_000);
});

describe("create cancelled with SIGTERM (Ganeti cancelling the job)", () => {
  test("while the parameters are resolved (config_url that never answers)", async () => {
    const hits = configHits;
    const run = spawnOsScript(spec({ osp: { config_url: `http://127.0.0.1:${server.port}/hang` } }));
    expect(await until(() => configHits > hits, 60_000)).not.toBeNull();
    run.proc.kill("SIGTERM");
    const r = await run.done;
    expectOneLineFailure(r, /cancel|interrupt/);
    expect(r.output).not.toContain("Starting image copy");
    await expectClean();
  }, 120_000);

  test("during the copy (and the progress monitor inherits no OSP_*)", async () => {
    const monitorEnv = join(work, "monitor-env");
    const monitor = join(work, "monitor.sh");
    const monitorLog = join(work, "monitor-log");
    writeFileSync(monitor, `#!/bin/sh\nenv > ${monitorEnv}\nexec cat > ${monitorLog}\n`);
    chmodSync(monitor, 0o755);
    rmSync(monitorLog, { force: true });
    const run = spawnOsScript(spec({ osp: { img_id: `http://127.0.0.1:${server.port}/slow.img` }, config: { PROGRESS_MONITOR: monitor } }));
    // with PROGRESS_MONITOR the progress messages go to the monitor, not to the log
    const copying = () => existsSync(monitorLog) && readFileSync(monitorLog, "utf8").includes("Starting image copy");
    expect(await until(copying, 60_000)).not.toBeNull();
    await Bun.sleep(300);
    run.proc.kill("SIGTERM");
    const r = await run.done;
    expectOneLineFailure(r, /cancel/);
    const env = readFileSync(monitorEnv, "utf8");
    expect(env).toContain("INSTANCE_NAME=life.example.org");
    expect(env).not.toContain("OSP_");
    expect(env).not.toContain(PASSWORD);
    await expectClean();
  }, 120_000);

  test("while the helper VM runs", async () => {
    const run = await createUntilHelper(spec());
    run.proc.kill("SIGTERM");
    const r = await run.done;
    expectOneLineFailure(r, /cancel/);
    await expectClean();
  }, 300_000);
});

describe("helper VM timeouts", () => {
  test("a helper that does not finish: stopped at HELPER_SOFT_TIMEOUT", async () => {
    const r = await runCreate(spec({ config: { QEMU: pausedQemu("paused-qemu"), HELPER_SOFT_TIMEOUT: "3", HELPER_HARD_TIMEOUT: "10" } }));
    expectOneLineFailure(r, /HELPER_SOFT_TIMEOUT=3 s and was stopped with SIGTERM/);
    await expectClean();
  }, 300_000);

  test("a helper VM that ignores SIGTERM: killed at HELPER_HARD_TIMEOUT, with everything it started", async () => {
    // qemu behind a wrapper that ignores SIGTERM and puts qemu in its own session, out of reach
    // of any process-group signal: only the PID namespace teardown can still kill it
    const r = await runCreate(spec({ config: { QEMU: pausedQemu("stubborn-qemu", true), HELPER_SOFT_TIMEOUT: "3", HELPER_HARD_TIMEOUT: "3" } }));
    expectOneLineFailure(r, /ignored SIGTERM for HELPER_HARD_TIMEOUT=3 s .* killed with SIGKILL/);
    await expectClean();
  }, 300_000);
});

describe("create frozen", () => {
  test("SIGSTOP while the helper runs: qemu is still killed at HELPER_SOFT_TIMEOUT + HELPER_HARD_TIMEOUT", async () => {
    const run = await createUntilHelper(spec({ config: { QEMU: pausedQemu("paused-qemu"), HELPER_SOFT_TIMEOUT: "4", HELPER_HARD_TIMEOUT: "2" } }));
    run.proc.kill("SIGSTOP");
    try {
      // nothing in create can act now: only the leash's `timeout` ends qemu
      expect(await until(() => qemuProper(work).length === 0, 120_000)).not.toBeNull();
    } finally {
      run.proc.kill("SIGCONT");
    }
    const r = await run.done;
    expectOneLineFailure(r, /ignored SIGTERM for HELPER_HARD_TIMEOUT=2 s/);
    await expectClean();
  }, 300_000);
});

describe("several creates at once", () => {
  test("4 creates started together all succeed, each disk with its own hostname and password", async () => {
    const jobs = [0, 1, 2, 3].map((i) => ({ name: `par${i}.example.org`, password: `${PASSWORD}-${i}`, disk: freshDisk(`par${i}`) }));
    const t0 = performance.now();
    const runs = await Promise.all(
      jobs.map((j) => runCreate({ ...spec({ disk: j.disk, instance: j.name, osp: { img_passwd: j.password } }) })),
    );
    const wall = performance.now() - t0;
    const each = runs.map((r) => /deployed in ([\d.]+) s/.exec(r.output)?.[1] ?? "?");
    console.log(`4 creates at once: ${(wall / 1000).toFixed(1)} s wall; each reported ${each.join(", ")} s`);
    runs.forEach((r, i) => {
      if (r.code !== 0) console.log(r.output);
      expect(r.code).toBe(0);
      for (const j of jobs) expect(r.output).not.toContain(j.password);
      expect(r.output).not.toContain("leftovers of dead runs");
      void i;
    });
    for (const j of jobs) {
      const m = mountDisk(j.disk, image.rootPartition);
      try {
        expect(m.read("/etc/hostname").trim()).toBe(j.name);
        const hash = shadowHash(m.read("/etc/shadow"), "root")!;
        for (const other of jobs) expect(verifyCrypt(other.password, hash)).toBe(other === j);
      } finally {
        m.close();
      }
    }
    await expectClean([...SECRETS, ...jobs.map((j) => j.password)]);
    for (const j of jobs) rmSync(j.disk, { force: true });
  }, 600_000);
});

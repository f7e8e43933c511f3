/**
 * `snf-image deploy` as an operator runs it: from a real pseudo-terminal
 * (expect), with the password typed at a no-echo prompt, a verified image
 * (IMAGE_VERIFY=required, clearsigned SHA256SUMS made here), and the progress
 * bar; then with --json for machines. Two helper boots: the first deploys
 * the cached Debian image, the second (img_id null, --json) re-customizes it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DIST, HELPER_DIR, leftovers, placeImage, writeConfig } from "../lib/deploy.ts";
import { makeKey, sumsLine, type TestKey } from "../lib/gpg.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const PASSWORD = "Typ3d-at-the-Prompt";
const BIN = join(DIST, "snf-image");
let work: string;
let runTmp: string;
let imageDir: string;
let deb: DebianImage;
let key: TestKey;
let config: string;
let disk: string;

const EXPECT_SCRIPT = `
set timeout 900
set stty_init "columns 100 rows 30"
spawn {*}$argv
expect {
  "Password for the image's users: " { send -- "$env(PW)\\r" }
  timeout { exit 97 }
  eof { exit 98 }
}
expect {
  "Repeat the password: " { send -- "$env(PW)\\r" }
  timeout { exit 97 }
}
expect eof
lassign [wait] pid spawnid os_error value
exit $value
`;

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: "/sbin:/bin:/usr/sbin:/usr/bin", SNF_IMAGE_CONFIG: config, TMPDIR: runTmp, TERM: "xterm", ...extra };
}

function nothingLeft() {
  expect(leftovers(work, runTmp, PASSWORD)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
}

beforeAll(async () => {
  expect(readFileSync(join(HELPER_DIR, "manifest.json")).length).toBeGreaterThan(0);
  work = mkdtempSync(join("/var/tmp", "snf-deploy-cli-test-"));
  runTmp = join(work, "tmp");
  imageDir = join(work, "images");
  mkdirSync(runTmp);
  mkdirSync(imageDir);
  deb = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  placeImage(deb.path, join(imageDir, "bookworm"));
  key = makeKey(join(work, "key"), "images <images@example.org>");
  const h = new Bun.CryptoHasher("sha256");
  for await (const c of Bun.file(deb.path).stream()) h.update(c);
  writeFileSync(join(imageDir, "SHA256SUMS"), sumsLine(h.digest("hex"), "bookworm"));
  key.clearsign(join(imageDir, "SHA256SUMS"));
  config = writeConfig(work, { IMAGE_DIR: imageDir, HELPER_DIR, HELPER_SOFT_TIMEOUT: "600", IMAGE_VERIFY: "required", IMAGE_KEYRING: key.keyring });
  disk = join(work, "vm.img");
  Bun.spawnSync(["truncate", "-s", "3G", disk]);
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("snf-image deploy", () => {
  test("on a terminal: no-echo password prompt, progress bar, helper tasks, a clean last line; the guest is customized", async () => {
    const script = join(work, "deploy.exp");
    writeFileSync(script, EXPECT_SCRIPT);
    const motd = join(work, "motd");
    writeFileSync(motd, "deployed by snf-image deploy\n");
    const keys = join(work, "keys");
    writeFileSync(keys, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsWk0dHeHk1CmGS8K5wM3Lr8B8N0lG2C3XnB0bUZ7t9 test@example.org\n");
    const p = Bun.spawn(
      [
        "expect",
        script,
        BIN,
        "deploy",
        "bookworm",
        disk,
        "--hostname",
        "cli1.example.org",
        "--ask-password",
        "--auth-keys",
        keys,
        "--property",
        "USERS=root",
        "--personality",
        `${motd}:/etc/motd:0644`,
        "--nic",
        "mac=52:54:00:12:34:56,ip=10.9.0.5,subnet=10.9.0.0/24,gateway=10.9.0.1",
      ],
      { env: env({ PW: PASSWORD }), stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(err).toBe("");
    if (code !== 0) throw new Error(`deploy under expect exited ${code}:\n${out.slice(-3000)}`);
    // The password never shows (the prompt does not echo it).
    expect(out).not.toContain(PASSWORD);
    // The bar: redrawn in place with bytes/s and ETA, 100 % at the end, then the helper's tasks.
    const frames = out.split(/\r\x1b\[K/);
    const bars = frames.filter((f) => f.startsWith("copy ["));
    expect(bars.length).toBeGreaterThan(1);
    for (const b of bars) expect(b.split("\n")[0]!.replace(/\r/g, "")).toMatch(/^copy \[[#-]+\] +\d+%  [\d.]+ (B|KiB|MiB|GiB)\/2\.0 GiB  [\d.]+ (B|KiB|MiB|GiB)\/s  ETA (\d+:\d\d|--:--)$/);
    expect(bars.at(-1)).toStartWith("copy [########################################] 100%");
    expect(frames.some((f) => /^helper \[\d+ done\] AssignHostname ok {2}[\d.]+ s/.test(f))).toBe(true);
    expect(out).toContain(`Image verified: sha256 matches SHA256SUMS signed by ${key.fingerprint}.`);
    // The redrawn line never wraps: no bar frame is wider than the terminal (log lines above it may wrap).
    for (const f of frames.filter((x) => /^(copy|helper) \[/.test(x))) expect(f.split(/\r?\n|\r/)[0]!.length).toBeLessThan(100);
    // The end: the bar is cleared and the summary is the last line, nothing after it.
    const tail = out.trimEnd().split(/\r?\n/).at(-1)!;
    expect(tail).toMatch(/\r\x1b\[Kdeployed bookworm onto .*vm\.img in [\d.]+ s \(copy [\d.]+ s, helper [\d.]+ s under (tcg|kvm), \d+ tasks\)$/);
    nothingLeft();

    const m = mountDisk(disk, deb.rootPartition);
    try {
      expect(m.read("/etc/hostname").trim()).toBe("cli1.example.org");
      expect(verifyCrypt(PASSWORD, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
      expect(m.read("/etc/motd")).toBe("deployed by snf-image deploy\n");
      expect(m.stat("/etc/motd").mode).toBe(0o644);
      expect(m.read("/root/.ssh/authorized_keys")).toContain("test@example.org");
      expect(m.read("/etc/network/interfaces")).toContain("10.9.0.5");
    } finally {
      m.close();
    }
  }, 900_000);

  // Runs on the disk the test above deployed (img_id null re-customizes it).
  test("--json: JSON lines on stdout (helper tasks, done with the task list); a failure is an error event and one stderr line", async () => {
    const p = Bun.spawn([BIN, "deploy", "null", disk, "--json", "--hostname", "cli2.example.org"], { env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`deploy --json exited ${code}: ${err.slice(-2000)}`);
    const events = out.trim().split("\n").map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });
    expect(events.filter((e) => e.event === "task-end").map((e) => e.task)).toContain("AssignHostname");
    const done = events.at(-1)!;
    expect(done).toMatchObject({ event: "done", ok: true, image: "null", hostname: "cli2.example.org", bytes: 0 });
    expect((done.tasks as { task: string }[]).length).toBeGreaterThan(5);
    nothingLeft();
    const m = mountDisk(disk, deb.rootPartition);
    try {
      expect(m.read("/etc/hostname").trim()).toBe("cli2.example.org");
    } finally {
      m.close();
    }

    // A failure: a tampered sums entry. The copy runs (copy events), then one error event; no helper boot.
    const bad = join(work, "bad");
    mkdirSync(bad);
    Bun.spawnSync(["dd", "if=/dev/urandom", `of=${join(bad, "small")}`, "bs=1M", "count=24", "status=none"]);
    writeFileSync(join(bad, "SHA256SUMS"), sumsLine("f".repeat(64), "small"));
    key.signDetached(join(bad, "SHA256SUMS"), ".gpg");
    const badConfig = writeConfig(bad, { IMAGE_DIR: bad, HELPER_DIR, IMAGE_VERIFY: "required", IMAGE_KEYRING: key.keyring });
    const small = join(work, "small.img");
    Bun.spawnSync(["truncate", "-s", "64M", small]);
    const f = Bun.spawn([BIN, "deploy", "small", small, "--json"], { env: env({ SNF_IMAGE_CONFIG: badConfig }), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [fout, ferr, fcode] = await Promise.all([new Response(f.stdout).text(), new Response(f.stderr).text(), f.exited]);
    expect(fcode).toBe(1);
    const fev = fout.trim().split("\n").map((l) => JSON.parse(l) as { event: string; [k: string]: unknown });
    expect(fev.some((e) => e.event === "copy")).toBe(true);
    expect(fev.at(-1)).toMatchObject({ event: "error", ok: false, message: expect.stringContaining("does not match local://SHA256SUMS") });
    expect(ferr.trimEnd().split("\n").at(-1)).toMatch(/^snf-image deploy: ERROR: image local:\/\/small does not match local:\/\/SHA256SUMS: sha256 /);
    nothingLeft();
    // Not a terminal, no --json: plain lines on stderr, nothing on stdout. IMAGE as a path
    // (outside the config's IMAGE_DIR): the SHA256SUMS next to the file is the one checked.
    const plain = Bun.spawnSync([BIN, "deploy", join(bad, "small"), small], { env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout.toString()).toBe("");
    const plainLines = plain.stderr.toString().trimEnd().split("\n");
    expect(plainLines).toContain("Starting image copy...");
    expect(plainLines.some((l) => /^copy 100%  24\.0 MiB\/24\.0 MiB  [\d.]+ (KiB|MiB|GiB)\/s  ETA 0:00$/.test(l))).toBe(true);
    expect(plain.stderr.toString()).not.toContain("\x1b");
    expect(plainLines.at(-1)).toStartWith("snf-image deploy: ERROR: image local://small does not match");
    nothingLeft();
  }, 900_000);

  test("Ctrl-C on the terminal during the copy: the bar is cleared, one cancel line, nothing left behind", async () => {
    // A slow image server: 1 MiB every 100 ms of a 256 MiB image.
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch() {
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            await Bun.sleep(100);
            if (sent >= 256) return c.close();
            sent++;
            c.enqueue(new Uint8Array(1024 * 1024).fill(7));
          },
        });
        return new Response(body, { headers: { "content-length": String(256 * 1024 * 1024) } });
      },
    });
    try {
      const script = join(work, "ctrl-c.exp");
      writeFileSync(
        script,
        `set timeout 120
set stty_init "columns 100 rows 30"
spawn {*}$argv
expect {
  -re {copy \[[#-]+\] +[1-9]} { send -- "\x03" }
  timeout { exit 97 }
  eof { exit 98 }
}
expect eof
lassign [wait] pid spawnid os_error value
exit $value
`,
      );
      const slowDisk = join(work, "slow.img");
      Bun.spawnSync(["truncate", "-s", "512M", slowDisk]);
      mkdirSync(join(work, "off"), { recursive: true });
      const offConfig = writeConfig(join(work, "off"), { IMAGE_DIR: imageDir, HELPER_DIR, IMAGE_VERIFY: "off" });
      const p = Bun.spawn(["expect", script, BIN, "deploy", `http://127.0.0.1:${server.port}/slow.raw`, slowDisk], {
        env: env({ SNF_IMAGE_CONFIG: offConfig }),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      expect(code).toBe(1);
      // The terminal echoes ^C after the bar; the bar's line is then cleared and the error is what it shows.
      const last = out.trimEnd().split(/\r?\n/).at(-1)!;
      expect(last).toMatch(/^\r\x1b\[Kcopy \[[^]*\r\x1b\[Ksnf-image deploy: ERROR: cancelled \(interrupted by SIGINT\): image copy interrupted: interrupted by SIGINT$/);
      expect(last.split("\r\x1b[K").at(-1)).toStartWith("snf-image deploy: ERROR: ");
      nothingLeft();
    } finally {
      server.stop(true);
    }
  }, 180_000);

  test("bad command lines: one line, exit 1, the disk untouched", async () => {
    const untouched = join(work, "untouched.img");
    writeFileSync(untouched, "MARK");
    Bun.spawnSync(["truncate", "-s", "64M", untouched]);
    const cases: [string[], string][] = [
      [["bookworm", untouched, "--hostname", "bad_name"], "--hostname must be a host name"],
      [["bookworm", untouched, "--nic", "mac=nope"], "--nic 0: mac= must be a MAC address"],
      [["bookworm", untouched, "--password-file", join(work, "missing")], "--password-file"],
      [["bookworm", untouched, "--ask-password"], "--ask-password needs a terminal on stdin"],
      [["bookworm"], "DISK is missing"],
      [["bookworm", untouched, "--format", "vmdk"], '--format "vmdk" is not one of'],
    ];
    for (const [args, text] of cases) {
      const p = Bun.spawnSync([BIN, "deploy", ...args], { env: env(), stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      expect(p.exitCode).toBe(1);
      const lines = p.stderr.toString().trimEnd().split("\n");
      expect(lines.at(-1)).toStartWith("snf-image deploy: ERROR: ");
      expect(lines.at(-1)).toContain(text);
      expect(p.stdout.toString()).toBe("");
    }
    expect(readFileSync(untouched).subarray(0, 4).toString()).toBe("MARK");
    nothingLeft();
  }, 60_000);
});

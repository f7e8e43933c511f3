/**
 * snf-image doctor on broken setups: each names the problem, exits non-zero,
 * and its --json output matches DoctorReportSchema. No VM is booted here (the
 * boot check is skipped because no usable helper image exists); the healthy
 * node with a real test boot is test/integration/doctor.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import { writeOsDefinition } from "../../build.ts";
import { judgeAccel } from "../../src/doctor/accel-check.ts";
import { parseDiagnose } from "../../src/doctor/ganeti-check.ts";
import { formatFromName } from "../../src/doctor/images.ts";
import { wrapperTarget } from "../../src/doctor/osdef-check.ts";
import { renderCheck } from "../../src/doctor/render.ts";
import { CHECK_IDS, type CheckId, type DoctorReport, DoctorReportSchema } from "../../src/doctor/schema.ts";
import { checkDiskWipe, parsePreallocWipe } from "../../src/doctor/wipe-check.ts";
import { parseConfig } from "../../src/config.ts";
import { checkImageVerify } from "../../src/doctor/verify-check.ts";
import { uidFromPasswd } from "../../src/doctor/user-check.ts";
import { PROTOCOL_VERSION } from "../../src/protocol.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
let tmp: string;
let imageDir: string;
let osPath: string;
let helperDir: string;

function conf(name: string, lines: string[]): string {
  const p = path.join(tmp, `${name}.conf`);
  fs.writeFileSync(p, `${lines.join("\n")}\n`);
  return p;
}

/** A config that is valid and points at the temp IMAGE_DIR and HELPER_DIR. */
const base = (extra: string[] = []) => [`IMAGE_DIR="${imageDir}"`, `HELPER_DIR="${helperDir}"`, ...extra];

async function doctor(config: string, args: string[] = ["--json"], env: Record<string, string> = {}) {
  const t0 = performance.now();
  const p = Bun.spawn([process.execPath, path.join(ROOT, "src/cli.ts"), "doctor", ...args], {
    env: { ...process.env, SNF_IMAGE_CONFIG: config, SNF_IMAGE_OS_SEARCH_PATH: osPath, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const ms = performance.now() - t0;
  let report: DoctorReport | null = null;
  if (args.includes("--json")) {
    const r = v.safeParse(DoctorReportSchema, JSON.parse(stdout));
    if (!r.success) throw new Error(`--json output does not match the schema: ${JSON.stringify(r.issues[0])}\n${stdout}`);
    report = r.output;
  }
  return { code, stdout, stderr, report, ms };
}

const check = (r: DoctorReport | null, id: CheckId) => {
  const c = r!.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no ${id} check`);
  return c;
};

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-doctor-unit-"));
  imageDir = path.join(tmp, "images");
  fs.mkdirSync(imageDir);
  fs.writeFileSync(path.join(imageDir, "debian.diskdump"), Buffer.alloc(4096));
  fs.writeFileSync(path.join(imageDir, "small.extdump"), Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)]));
  fs.writeFileSync(path.join(imageDir, "notes.txt"), "hello");
  helperDir = path.join(tmp, "helper-missing");
  osPath = path.join(tmp, "os");
  const exe = path.join(tmp, "snf-image");
  fs.copyFileSync("/bin/true", exe);
  fs.chmodSync(exe, 0o755);
  writeOsDefinition(path.join(osPath, "snf-image"), exe);
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("doctor on broken setups (CLI, --json)", () => {
  test("missing helper: names HELPER_DIR and the update command, skips the boot quickly, exits 1", async () => {
    const r = await doctor(conf("nohelper", base()));
    expect(r.code).toBe(1);
    expect(r.report!.ok).toBe(false);
    const h = check(r.report, "helper-image");
    expect(h.status).toBe("fail");
    expect(h.finding).toContain(`helper image not found in ${helperDir}`);
    expect(h.fix).toContain("snf-image-update-helper");
    const b = check(r.report, "helper-boot");
    expect(b.status).toBe("fail");
    expect(b.finding).toContain("skipped");
    expect(b.bootMs).toBeUndefined();
    expect(r.ms).toBeLessThan(15_000);
    // the other checks still ran and passed
    expect(check(r.report, "config").status).toBe("ok");
    expect(check(r.report, "os-definition").status).toBe("ok");
    expect(check(r.report, "helper-user").status).toBe("ok");
  });

  test("wrong helper protocol version: names both versions and the fix", async () => {
    const dir = path.join(tmp, "helper-old");
    fs.mkdirSync(dir);
    for (const f of ["vmlinux", "initrd.cpio", "tools.img"]) fs.writeFileSync(path.join(dir, f), "x");
    const manifest = { protocol: PROTOCOL_VERSION + 41, version: "0.0.1", kernel: "6.1.0-test-amd64", built: new Date().toISOString(), files: { kernel: "vmlinux", initrd: "initrd.cpio", tools: "tools.img" } };
    fs.writeFileSync(path.join(dir, "manifest.json"), JSON.stringify(manifest));
    const r = await doctor(conf("oldhelper", [`IMAGE_DIR="${imageDir}"`, `HELPER_DIR="${dir}"`]));
    expect(r.code).toBe(1);
    const h = check(r.report, "helper-image");
    expect(h.status).toBe("fail");
    expect(h.finding).toContain(`protocol ${PROTOCOL_VERSION + 41}`);
    expect(h.finding).toContain(`needs ${PROTOCOL_VERSION}`);
    expect(h.fix).toContain("snf-image-update-helper");
  });

  test("IMAGE_DIR missing or not a directory", async () => {
    const r1 = await doctor(conf("noimagedir", [`IMAGE_DIR="${tmp}/nope"`, `HELPER_DIR="${helperDir}"`]));
    expect(r1.code).toBe(1);
    expect(check(r1.report, "image-dir")).toMatchObject({ status: "fail", finding: `IMAGE_DIR ${tmp}/nope does not exist` });
    const file = path.join(imageDir, "debian.diskdump");
    const r2 = await doctor(conf("fileimagedir", [`IMAGE_DIR="${file}"`, `HELPER_DIR="${helperDir}"`]));
    expect(check(r2.report, "image-dir")).toMatchObject({ status: "fail", finding: `IMAGE_DIR ${file} is not a directory` });
  });

  test("unreadable IMAGE_DIR (checked as an unprivileged user, since root reads anything)", async () => {
    const locked = path.join(tmp, "locked");
    fs.mkdirSync(locked, { mode: 0o700 });
    fs.chmodSync(tmp, 0o755);
    const { checkImageDir } = await import("../../src/doctor/images.ts");
    if (process.getuid?.() !== 0) {
      const c = await checkImageDir(locked);
      expect(c.status).toBe("fail");
      expect(c.finding).toContain("not readable");
      return;
    }
    // root: run the check in a child that drops to nobody
    const script = `import { checkImageDir } from ${JSON.stringify(path.join(ROOT, "src/doctor/images.ts"))}; console.log(JSON.stringify(await checkImageDir(${JSON.stringify(locked)})));`;
    const sf = path.join(tmp, "as-nobody.ts");
    fs.writeFileSync(sf, script);
    fs.chmodSync(sf, 0o644);
    const p = Bun.spawnSync(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", process.execPath, sf], { stdout: "pipe", stderr: "pipe", cwd: "/" });
    expect(p.stderr.toString()).toBe("");
    const c = JSON.parse(p.stdout.toString());
    expect(c.status).toBe("fail");
    expect(c.finding).toBe(`IMAGE_DIR ${locked} is not readable`);
    expect(c.fix).toContain("chmod");
  });

  test("IMAGE_DIR lists images with format (by name), compression (by magic) and size", async () => {
    const r = await doctor(conf("images", base()));
    const c = check(r.report, "image-dir");
    expect(c.status).toBe("ok");
    expect(c.images).toEqual([
      { name: "debian.diskdump", format: "diskdump", compression: null, sizeBytes: 4096 },
      { name: "notes.txt", format: null, compression: null, sizeBytes: 5 },
      { name: "small.extdump", format: "extdump", compression: "zstd", sizeBytes: 104 },
    ]);
    expect(r.stdout).not.toContain("hello");
    const human = await doctor(conf("images", base()), []);
    expect(human.stdout).toContain("debian.diskdump: diskdump, uncompressed, 4.0 KiB");
    expect(human.stdout).toContain("small.extdump: extdump, zstd, 104 B");
  });

  test("bad config line: names file:line, exits 1, other checks still run on defaults", async () => {
    const p = conf("badline", [...base(), "HELPER_MEMORY=lots"]);
    const r = await doctor(p);
    expect(r.code).toBe(1);
    const c = check(r.report, "config");
    expect(c.status).toBe("fail");
    expect(c.finding).toContain(`${p}:3: HELPER_MEMORY must be a whole number`);
    expect(r.report!.checks.length).toBeGreaterThan(5);
    const p2 = conf("garbage", ["this is not a setting"]);
    const r2 = await doctor(p2, []);
    expect(r2.code).toBe(1);
    expect(r2.stdout).toContain(`[FAIL] config: ${p2}:1: not a KEY="value" line`);
  });

  test("missing qemu: QEMU=/nonexistent names it and skips the boot", async () => {
    const r = await doctor(conf("noqemu", base(['QEMU="/nonexistent/qemu-system-x86_64"'])));
    expect(r.code).toBe(1);
    const c = check(r.report, "qemu");
    expect(c.status).toBe("fail");
    expect(c.finding).toContain("QEMU=/nonexistent/qemu-system-x86_64 not found");
    expect(c.fix).toContain("qemu-system-x86");
  });

  test("OS scripts not executable: names the scripts and the chmod", async () => {
    const bad = path.join(tmp, "os-bad");
    writeOsDefinition(path.join(bad, "snf-image"), path.join(tmp, "snf-image"));
    fs.chmodSync(path.join(bad, "snf-image", "create"), 0o644);
    fs.chmodSync(path.join(bad, "snf-image", "verify"), 0o600);
    const r = await doctor(conf("osbad", base()), ["--json"], { SNF_IMAGE_OS_SEARCH_PATH: `${bad}:${osPath}` });
    expect(r.code).toBe(1);
    const c = check(r.report, "os-definition");
    expect(c.status).toBe("fail");
    expect(c.finding).toContain("create is not executable (mode 644)");
    expect(c.finding).toContain("verify is not executable (mode 600)");
    expect(c.fix).toContain(`chmod 755 ${bad}/snf-image/create`);
    // the good copy later in the path is shadowed, and said so
    expect(c.details!.join("\n")).toContain("is shadowed by");
  });

  test("OS definition: missing, wrong API version, dangling executable", async () => {
    const r1 = await doctor(conf("osnone", base()), ["--json"], { SNF_IMAGE_OS_SEARCH_PATH: path.join(tmp, "empty-os") });
    expect(check(r1.report, "os-definition").finding).toContain("not found in the Ganeti OS search path");
    const bad = path.join(tmp, "os-api");
    writeOsDefinition(path.join(bad, "snf-image"), "/nonexistent/snf-image");
    fs.writeFileSync(path.join(bad, "snf-image", "ganeti_api_version"), "15\n");
    const r2 = await doctor(conf("osapi", base()), ["--json"], { SNF_IMAGE_OS_SEARCH_PATH: bad });
    const f = check(r2.report, "os-definition").finding;
    expect(f).toContain("ganeti_api_version says 15, not 20");
    expect(f).toContain("the scripts run /nonexistent/snf-image, which is missing or not executable");
  });

  test("HELPER_USER that does not exist", async () => {
    const r = await doctor(conf("nouser", base(['HELPER_USER="snf-no-such-user"'])));
    expect(r.code).toBe(1);
    expect(check(r.report, "helper-user")).toMatchObject({ status: "fail", finding: "HELPER_USER snf-no-such-user does not exist" });
  });

  test("KVM that hangs (PVM here): doctor reports it, picks TCG, never boots under KVM", async () => {
    const r = await doctor(conf("auto", base()));
    const a = check(r.report, "accel");
    if (fs.existsSync("/sys/module/kvm_pvm")) {
      expect(a.status).toBe("warn");
      expect(a.accel).toBe("tcg");
      expect(a.finding).toContain("PVM");
    } else {
      expect(["ok", "warn"]).toContain(a.status);
    }
    // forcing kvm where it cannot work: fail, and the boot is not attempted
    const forced = await doctor(conf("forcekvm", base(['HELPER_ACCEL="kvm"'])));
    const f = check(forced.report, "accel");
    if (fs.existsSync("/sys/module/kvm_pvm") || !fs.existsSync("/dev/kvm")) {
      expect(f.status).toBe("fail");
      expect(f.fix).toContain("HELPER_ACCEL=auto");
      expect(forced.code).toBe(1);
    }
    expect(forced.ms).toBeLessThan(15_000);
  });

  test("human output: one [STATUS] line per check, a fix line under failures, summary last", async () => {
    const r = await doctor(conf("nohelper", base()), []);
    const lines = r.stdout.trim().split("\n");
    expect(lines.filter((l) => /^\[(?: OK |WARN|FAIL)\] /.test(l)).length).toBe(CHECK_IDS.length);
    expect(r.stdout).toContain("[FAIL] helper-image:");
    expect(lines.at(-1)).toContain("NOT ready to deploy");
    expect(r.stderr).toBe("");
  });
});

describe("doctor pure parts", () => {
  test("image-verify reports the policy and the keyring", () => {
    expect(checkImageVerify({ IMAGE_VERIFY: "off", IMAGE_KEYRING: "" })).toMatchObject({ status: "ok", finding: expect.stringContaining("IMAGE_VERIFY=off") });
    expect(checkImageVerify({ IMAGE_VERIFY: "required", IMAGE_KEYRING: "" })).toMatchObject({ status: "fail", finding: expect.stringContaining("IMAGE_KEYRING is not set") });
    expect(checkImageVerify({ IMAGE_VERIFY: "if-present", IMAGE_KEYRING: path.join(tmp, "nope.gpg") })).toMatchObject({ status: "fail", finding: expect.stringContaining("not readable (ENOENT)") });
    const armored = path.join(tmp, "keys.asc");
    fs.writeFileSync(armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n");
    expect(checkImageVerify({ IMAGE_VERIFY: "required", IMAGE_KEYRING: armored })).toMatchObject({ status: "fail", fix: expect.stringContaining("gpg --dearmor") });
    const junk = path.join(tmp, "junk.gpg");
    fs.writeFileSync(junk, "not a keyring at all");
    expect(checkImageVerify({ IMAGE_VERIFY: "required", IMAGE_KEYRING: junk }).status).toBe("warn");
    const debian = "/usr/share/keyrings/debian-archive-keyring.gpg";
    if (fs.existsSync(debian)) {
      expect(checkImageVerify({ IMAGE_VERIFY: "required", IMAGE_KEYRING: debian })).toMatchObject({ status: "ok", finding: expect.stringMatching(/\(\d+ public keys\) checked by .*gpgv/) });
    }
  });

  test("judgeAccel", () => {
    const pvm = { devKvmUsable: true, cpuHasVirt: false, pvm: true };
    const good = { devKvmUsable: true, cpuHasVirt: true, pvm: false };
    const none = { devKvmUsable: false, cpuHasVirt: true, pvm: false };
    expect(judgeAccel("auto", pvm)).toMatchObject({ accel: "tcg", outcome: { status: "warn" } });
    expect(judgeAccel("auto", good)).toMatchObject({ accel: "kvm", outcome: { status: "ok" } });
    expect(judgeAccel("kvm", pvm)).toMatchObject({ accel: null, outcome: { status: "fail" } });
    expect(judgeAccel("kvm", none)).toMatchObject({ accel: null, outcome: { status: "fail" } });
    expect(judgeAccel("tcg", pvm)).toMatchObject({ accel: "tcg", outcome: { status: "ok" } });
    expect(judgeAccel("auto", none).outcome.finding).toContain("/dev/kvm is missing");
  });

  test("parseDiagnose", () => {
    const out = [
      "OS: debootstrap [global status: valid]",
      "  Node: node1.snf.test, status: valid (path: /usr/share/ganeti/os/debootstrap)",
      "OS: snf-image [global status: invalid]",
      "  Node: node1.snf.test, status: invalid - Missing file 'verify'",
      "  Node: node2.snf.test, status: valid",
    ].join("\n");
    expect(parseDiagnose(out, "snf-image", ["node1.snf.test"])).toEqual({ found: true, globalStatus: "invalid", nodeStatus: "invalid", reason: "- Missing file 'verify'" });
    expect(parseDiagnose(out, "snf-image", ["node2"])).toMatchObject({ nodeStatus: "valid" });
    expect(parseDiagnose(out, "nope", ["node1"]).found).toBe(false);
  });

  test("small parsers", () => {
    expect(formatFromName("a.b.ntfsdump")).toBe("ntfsdump");
    expect(formatFromName("x.diskdump.gz")).toBeNull();
    expect(uidFromPasswd("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/x\n", "nobody")).toBe(65534);
    expect(uidFromPasswd("nobodyx:x:1:1::/:/x\n", "nobody")).toBeNull();
    expect(wrapperTarget('#!/bin/sh\nexec /usr/lib/snf-image/snf-image os create "$@"\n', "/d")).toBe("/usr/lib/snf-image/snf-image");
    expect(wrapperTarget('#!/bin/sh\nexec "${0%/*}/snf-image" os create "$@"\n', "/usr/share/ganeti/os/x")).toBe("/usr/share/ganeti/os/x/snf-image");
  });

  test("disk-wipe: prealloc_wipe_disks from gnt-cluster info; a node without Ganeti says so", async () => {
    expect(parsePreallocWipe("Cluster parameters:\n  - candidate pool size: 10\n  - prealloc_wipe_disks: True\n")).toBe(true);
    expect(parsePreallocWipe("  - preallocation wipe disks: False\n")).toBe(false);
    expect(parsePreallocWipe("Cluster name: c\n")).toBeNull();
    if (Bun.which("gnt-cluster", { PATH: "/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/bin" })) return; // the e2e suite covers a real cluster
    const c = await checkDiskWipe(parseConfig("", null));
    expect(c.status).toBe("warn");
    expect(c.finding).toMatch(/^Ganeti is not installed on this node: prealloc_wipe_disks unknown; ZERO_DISK_TAIL=cheap zeroes disk 0 past the image on file disks/);
  });

  test("renderCheck shows fix and details for failures", () => {
    const s = renderCheck({ id: "qemu", status: "fail", finding: "gone", fix: "install it", durationMs: 1, details: ["a"] });
    expect(s).toBe("[FAIL] qemu: gone\n       fix: install it\n       - a");
  });
});

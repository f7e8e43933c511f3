/**
 * snf-image doctor on a healthy node: a real helper image (built here from
 * this checkout with `snf-image helper build`), a real test boot of the helper
 * VM under the accelerator create would use (TCG on this PVM host), exit 0.
 * Also: a helper image whose kernel is broken fails the boot check, and a
 * doctor run leaves no temp dir and no qemu behind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import { writeOsDefinition } from "../../build.ts";
import { type DoctorReport, DoctorReportSchema } from "../../src/doctor/schema.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
const CLI = path.join(ROOT, "src/cli.ts");
let tmp: string;

async function sh(argv: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn(argv, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

async function doctor(config: string): Promise<{ code: number; report: DoctorReport; stderr: string }> {
  const r = await sh([process.execPath, CLI, "doctor", "--json"], { SNF_IMAGE_CONFIG: config, SNF_IMAGE_OS_SEARCH_PATH: path.join(tmp, "os"), TMPDIR: path.join(tmp, "run") });
  const parsed = v.safeParse(DoctorReportSchema, JSON.parse(r.stdout));
  if (!parsed.success) throw new Error(`schema mismatch: ${JSON.stringify(parsed.issues[0])}`);
  return { code: r.code, report: parsed.output, stderr: r.stderr };
}

const qemuPids = () =>
  fs
    .readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(tmp);
      } catch {
        return false;
      }
    });

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-doctor-it-"));
  const helperExe = path.join(tmp, "snf-image-helper");
  const c = await sh([process.execPath, "build", "--compile", path.join(ROOT, "helper/main.ts"), "--outfile", helperExe]);
  if (c.code !== 0) throw new Error(`compiling the helper failed: ${c.stderr}`);
  const b = await sh([process.execPath, CLI, "helper", "build", "--out", path.join(tmp, "helper"), "--helper", helperExe], { SNF_IMAGE_CONFIG: "/dev/null" });
  if (b.code !== 0) throw new Error(`helper build failed: ${b.stderr}`);
  fs.mkdirSync(path.join(tmp, "images"));
  fs.mkdirSync(path.join(tmp, "run"));
  fs.writeFileSync(path.join(tmp, "images", "tiny.diskdump"), Buffer.alloc(1 << 20));
  const hostExe = path.join(tmp, "snf-image");
  fs.copyFileSync("/bin/true", hostExe);
  fs.chmodSync(hostExe, 0o755);
  writeOsDefinition(path.join(tmp, "os", "snf-image"), hostExe);
  fs.writeFileSync(path.join(tmp, "ok.conf"), `IMAGE_DIR="${tmp}/images"\nHELPER_DIR="${tmp}/helper"\n`);
}, 600_000);

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("doctor on a healthy node", () => {
  test("real test boot of the helper succeeds, timed, under the accelerator create uses; exit 0", async () => {
    const r = await doctor(path.join(tmp, "ok.conf"));
    const failed = r.report.checks.filter((c) => c.status === "fail");
    expect(failed).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.report.ok).toBe(true);
    const accel = r.report.checks.find((c) => c.id === "accel")!;
    const boot = r.report.checks.find((c) => c.id === "helper-boot")!;
    expect(boot.status).toBe("ok");
    expect(boot.accel).toBe(accel.accel!);
    expect(boot.bootMs!).toBeGreaterThan(300);
    expect(boot.finding).toMatch(/answered SUCCESS in \d+\.\d s under (TCG|KVM): cold boot \(no saved helper VM.*\): state saved/);
    if (fs.existsSync("/sys/module/kvm_pvm")) expect(boot.accel).toBe("tcg");
    // the boot saved the waiting VM: the next doctor (and create) resumes it, and says so
    const again = (await doctor(path.join(tmp, "ok.conf"))).report.checks.find((c) => c.id === "helper-boot")!;
    expect(again.status).toBe("ok");
    expect(again.finding).toMatch(/answered SUCCESS in \d+\.\d s under (TCG|KVM): resumed from its saved state \(saved state \d+ MiB\)/);
    const images = r.report.checks.find((c) => c.id === "image-dir")!;
    expect(images.images).toEqual([{ name: "tiny.diskdump", format: "diskdump", compression: null, sizeBytes: 1 << 20 }]);
    // nothing left behind: no new temp entries, no qemu
    expect(fs.readdirSync(path.join(tmp, "run"))).toEqual([]);
    expect(qemuPids()).toEqual([]);
  }, 300_000);

  test("a helper image with a broken kernel fails the boot check with qemu's reason", async () => {
    const broken = path.join(tmp, "helper-broken");
    fs.cpSync(path.join(tmp, "helper"), broken, { recursive: true });
    fs.writeFileSync(path.join(broken, "vmlinux"), Buffer.alloc(4096));
    const conf = path.join(tmp, "broken.conf");
    fs.writeFileSync(conf, `IMAGE_DIR="${tmp}/images"\nHELPER_DIR="${broken}"\nHELPER_SOFT_TIMEOUT=60\n`);
    const r = await doctor(conf);
    expect(r.code).toBe(1);
    const boot = r.report.checks.find((c) => c.id === "helper-boot")!;
    expect(boot.status).toBe("fail");
    expect(boot.finding).toContain("helper VM");
    expect(qemuPids()).toEqual([]);
    expect(fs.readdirSync(path.join(tmp, "run"))).toEqual([]);
  }, 300_000);
});

/**
 * Real install of the Debian packages on this machine (root): build both
 * .debs from this checkout, `dpkg -i` them (+ `apt-get -f install` for the
 * dependencies), run snf-image-update-helper and `snf-image doctor` using
 * only what the packages installed, check that a changed conffile survives a
 * reinstall, then `dpkg --purge` both and check nothing is left.
 *
 * The machine is shared: whatever happens, afterAll purges the packages.
 * The test refuses to run if snf-image-host is already installed (it would
 * purge someone else's install). Dependencies that apt pulls in (e.g.
 * linux-image-amd64) stay installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as v from "valibot";
import { buildDebs } from "../../packaging/build-deb.ts";
import { DoctorReportSchema } from "../../src/doctor/schema.ts";
import { placeImage } from "../lib/deploy.ts";
import { addArgs, clusterUp, gnt, instanceDiskDir } from "../lib/ganeti.ts";
import { debianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const ROOT = path.resolve(import.meta.dir, "../..");
const PACKAGES = ["snf-image-helper", "snf-image-host"];
const LEFTOVERS = ["/usr/lib/snf-image", "/usr/share/ganeti/os/snf-image", "/etc/snf-image", "/var/lib/snf-image", "/var/cache/snf-image", "/usr/bin/snf-image", "/usr/sbin/snf-image-update-helper"];
const isRoot = process.getuid?.() === 0;
const ENV: Record<string, string> = { ...(process.env as Record<string, string>), DEBIAN_FRONTEND: "noninteractive", PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" };
delete ENV.SNF_IMAGE_CONFIG;
delete ENV.SNF_IMAGE_OS_SEARCH_PATH;

let tmp = "";
let debs: { host: string; helper: string };
let weInstalled = false;

async function sh(argv: string[], opts: { cwd?: string } = {}) {
  const p = Bun.spawn(argv, { env: ENV, cwd: opts.cwd ?? "/", stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

async function status(pkg: string): Promise<string> {
  return (await sh(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg])).stdout.trim();
}

async function purge(): Promise<void> {
  await sh(["dpkg", "--purge", ...PACKAGES]);
}

beforeAll(async () => {
  if (!isRoot) return;
  for (const p of PACKAGES) {
    const s = await status(p);
    if (s && !s.startsWith("un") && !s.startsWith("pn")) throw new Error(`${p} is already installed (${s}): not touching someone else's install`);
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-deb-it-"));
  fs.chmodSync(tmp, 0o755);
  for (const [entry, out] of [["src/cli.ts", "snf-image"], ["helper/main.ts", "snf-image-helper"]]) {
    const r = await sh([process.execPath, "build", "--compile", "--minify-syntax", "--sourcemap=none", path.join(ROOT, entry!), "--outfile", path.join(tmp, out!)], { cwd: ROOT });
    if (r.code !== 0) throw new Error(`bun build --compile ${entry} failed: ${r.stderr}`);
  }
  debs = buildDebs({ distDir: tmp, outDir: tmp, fast: true });
}, 900_000);

afterAll(async () => {
  if (!isRoot) return;
  if (weInstalled) await purge();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}, 300_000);

describe.skipIf(!isRoot)("Debian packages: install, update helper, doctor, purge", () => {
  test("lintian: no errors on either package (warnings are explained in docs/packaging.md)", async () => {
    const r = await sh(["lintian", "--no-tag-display-limit", debs.host, debs.helper]);
    const lines = (r.stdout + r.stderr).split("\n").filter(Boolean);
    console.log(lines.join("\n"));
    expect(lines.filter((l) => l.startsWith("E:"))).toEqual([]);
    const explained = fs.readFileSync(path.join(ROOT, "docs/packaging.md"), "utf8");
    for (const w of lines.filter((l) => l.startsWith("W:"))) expect(explained).toContain(w.split(" ")[2]!);
  }, 900_000);

  test("dpkg -i both + apt-get -f install: configured, files in place, helper built by postinst", async () => {
    weInstalled = true;
    const i = await sh(["dpkg", "-i", debs.host, debs.helper]);
    if (i.code !== 0) {
      // missing dependencies leave the packages unpacked; apt-get -f installs them and configures ours
      const f = await sh(["apt-get", "-f", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]);
      expect(f.stderr.split("\n").filter((l) => l.startsWith("E:"))).toEqual([]);
      expect(f.code).toBe(0);
    }
    for (const p of PACKAGES) expect(await status(p)).toBe("ii");
    expect(fs.statSync("/usr/lib/snf-image/snf-image").mode & 0o777).toBe(0o755);
    expect(fs.readlinkSync("/usr/bin/snf-image")).toBe("../lib/snf-image/snf-image");
    for (const s of ["create", "import", "export", "rename", "verify"]) {
      const f = `/usr/share/ganeti/os/snf-image/${s}`;
      expect(fs.statSync(f).mode & 0o111).not.toBe(0);
      expect(fs.readFileSync(f, "utf8")).toContain(`exec /usr/lib/snf-image/snf-image os ${s}`);
    }
    expect(fs.readFileSync("/usr/share/ganeti/os/snf-image/ganeti_api_version", "utf8").trim()).toBe("20");
    expect(fs.readFileSync("/etc/snf-image/snf-image.conf", "utf8")).toContain('#HELPER_DIR="/var/lib/snf-image/helper"');
    // the postinst (or its trigger) already built the helper
    const manifest = JSON.parse(fs.readFileSync("/var/lib/snf-image/helper/manifest.json", "utf8"));
    expect(manifest.version).toBe((await import("../../package.json")).version);
  }, 1_800_000);

  test("snf-image-update-helper rebuilds the helper image", async () => {
    const before = fs.statSync("/var/lib/snf-image/helper/manifest.json").mtimeMs;
    const r = await sh(["snf-image-update-helper"]);
    expect(r.stderr).toContain("helper image for protocol");
    expect(r.code).toBe(0);
    expect(fs.statSync("/var/lib/snf-image/helper/manifest.json").mtimeMs).toBeGreaterThan(before);
  }, 600_000);

  test("snf-image doctor (the installed one, the installed config) exits 0 after a real test boot", async () => {
    const r = await sh(["snf-image", "doctor", "--json"]);
    const parsed = v.safeParse(DoctorReportSchema, JSON.parse(r.stdout));
    if (!parsed.success) throw new Error(`doctor --json does not match its schema: ${JSON.stringify(parsed.issues[0])}`);
    const report = parsed.output;
    expect(report.configFile).toBe("/etc/snf-image/snf-image.conf");
    expect(report.checks.filter((c) => c.status === "fail")).toEqual([]);
    expect(r.code).toBe(0);
    expect(report.checks.find((c) => c.id === "helper-boot")!.status).toBe("ok");
    const osdef = report.checks.find((c) => c.id === "os-definition")!;
    expect(osdef.status).toBe("ok");
    const human = await sh(["snf-image", "doctor", "--no-boot"]);
    expect(human.stdout).toContain("[ OK ] helper-image:");
  }, 600_000);

  test("a changed conffile survives reinstalling the package", async () => {
    fs.appendFileSync("/etc/snf-image/snf-image.conf", 'HELPER_MEMORY="384"\n');
    const r = await sh(["dpkg", "-i", debs.host]);
    expect(r.code).toBe(0);
    expect(fs.readFileSync("/etc/snf-image/snf-image.conf", "utf8")).toContain('HELPER_MEMORY="384"');
    expect(await status("snf-image-host")).toBe("ii");
  }, 600_000);

  test("real Ganeti deploys with only what the packages installed", async () => {
    // Ganeti searches /srv/ganeti/os first: nothing of the build tree may shadow the package.
    expect(fs.existsSync("/srv/ganeti/os/snf-image")).toBe(false);
    const img = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
    const imagePath = "/var/lib/snf-image/bookworm"; // the packaged default IMAGE_DIR
    placeImage(img.path, imagePath);
    const name = "deb1.snf.test";
    try {
      await clusterUp();
      const diag = await gnt(["os", "diagnose"]);
      expect(diag.stdout).toMatch(/snf-image.*valid/);
      const add = await gnt(addArgs({ os: "snf-image+default", instance: name, sizeMiB: 3072, params: { img_id: "bookworm", img_format: "diskdump", img_passwd: "deb-Pw-1" } }));
      if (add.code !== 0) console.log(add.stdout + add.stderr);
      expect(add.code).toBe(0);
      const dir = instanceDiskDir(name);
      const disk = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith(".disk0"))!);
      const m = mountDisk(disk, img.rootPartition);
      try {
        expect(m.read("/etc/hostname").trim()).toBe(name);
        expect(verifyCrypt("deb-Pw-1", shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
      } finally {
        m.close();
      }
    } finally {
      await gnt(["instance", "remove", "-f", "--ignore-failures", name]);
      fs.rmSync(imagePath, { force: true });
    }
  }, 1_800_000);

  test("dpkg --purge both leaves nothing behind", async () => {
    const r = await sh(["dpkg", "--purge", ...PACKAGES]);
    expect(r.code).toBe(0);
    weInstalled = false;
    for (const p of PACKAGES) expect(["un", "pn", ""]).toContain((await status(p)).slice(0, 2));
    expect(LEFTOVERS.filter((p) => fs.existsSync(p))).toEqual([]);
  }, 300_000);
});

/**
 * IMAGE_VERIFY through `create` the way Ganeti calls it: SHA256SUMS and
 * SHA512SUMS files signed with a key made here (Debian's gpg in a temporary
 * GNUPGHOME), checked by the real gpgv, images from IMAGE_DIR and from a real
 * HTTP server on 127.0.0.1. Every refusal happens before the helper VM; the
 * cases that pass verification are shown to reach the helper stage with a
 * real qemu: stopped by a 1 s HELPER_SOFT_TIMEOUT when it boots cold, or,
 * resumed, answering that the test image has no partition (the full
 * customization of a verified image is booted once in deploy-cli.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, leftovers, runCreate, type ScriptRun } from "../lib/deploy.ts";
import { makeKey, sumsLine, type TestKey } from "../lib/gpg.ts";

const MiB = 1024 * 1024;
const IMAGE_BYTES = 16 * MiB;
const DISK_BYTES = 64 * MiB;
const MARK = "UNTOUCHED-DISK-MARKER";
let work: string;
let runTmp: string;
let image: string;
let gz: string;
let key: TestKey;
let stranger: TestKey;
let server: ReturnType<typeof Bun.serve>;
let base: string;

const hex = (algo: "sha256" | "sha512", file: string) => new Bun.CryptoHasher(algo).update(readFileSync(file)).digest("hex");

/** A fresh IMAGE_DIR (also served over HTTP under /NAME/) holding the test image as `img`. */
function imageDir(name: string, withGz = false): string {
  const d = join(work, "dirs", name);
  mkdirSync(d, { recursive: true });
  linkSync(image, join(d, "img"));
  if (withGz) linkSync(gz, join(d, "img.gz"));
  return d;
}

/** A disk that starts with MARK: still there means the copy never started. */
function freshDisk(name: string): string {
  const d = join(work, `${name}.disk`);
  rmSync(d, { force: true });
  writeFileSync(d, MARK);
  Bun.spawnSync(["truncate", "-s", String(DISK_BYTES), d]);
  return d;
}

function readAt(file: string, pos: number, len: number): Buffer {
  const fd = openSync(file, "r");
  const b = Buffer.alloc(len);
  readSync(fd, b, 0, len, pos);
  closeSync(fd);
  return b;
}

async function create(disk: string, dir: string, config: Record<string, string>, imgId = "img"): Promise<ScriptRun> {
  const r = await runCreate({
    disks: [disk],
    imageDir: dir,
    osp: { img_id: imgId, img_format: "diskdump" },
    config: { HELPER_ACCEL: "tcg", HELPER_SOFT_TIMEOUT: "1", HELPER_HARD_TIMEOUT: "5", ...config },
    extraEnv: { TMPDIR: runTmp },
  });
  // Nothing left behind, whatever the outcome; no gpgv over this test's files either.
  expect(leftovers(work, runTmp)).toEqual({ qemu: [], loops: [], children: [], temp: [], secretIn: [] });
  expect(Bun.spawnSync(["pgrep", "-f", `gpgv.*${work}`]).exitCode).toBe(1);
  return r;
}

/** Refused before the copy: one line, the disk untouched, no helper. */
function refusedBeforeCopy(r: ScriptRun, disk: string, text: string | RegExp) {
  expect(r.code).toBe(1);
  expect(r.lastLine).toStartWith("snf-image create: ERROR: ");
  if (typeof text === "string") expect(r.lastLine).toContain(text);
  else expect(r.lastLine).toMatch(text);
  expect(r.output).not.toContain("Starting image copy");
  expect(r.output).not.toContain("helper VM:");
  expect(readAt(disk, 0, MARK.length).toString()).toBe(MARK);
}

/** Verified (or not checked), copied, and handed to a real helper VM. */
function reachedHelper(r: ScriptRun, disk: string) {
  // the helper either ran out of its 1 s (a cold boot) or, resumed, answered about the test
  // image (which has no partition): both come from a real helper VM after the copy
  expect(r.lastLine).toMatch(/helper VM did not finish within HELPER_SOFT_TIMEOUT=1 s|image customization failed: finding the root partition: no partitions found/);
  expect(r.output).toContain("Image copy finished.");
  expect(new Bun.CryptoHasher("sha256").update(readAt(disk, 0, IMAGE_BYTES)).digest("hex")).toBe(hex("sha256", image));
}

beforeAll(() => {
  work = mkdtempSync(join("/var/tmp", "snf-verify-test-"));
  runTmp = join(work, "tmp");
  mkdirSync(runTmp);
  image = join(work, "image.raw");
  Bun.spawnSync(["dd", `if=/dev/urandom`, `of=${image}`, "bs=1M", "count=16", "status=none"]);
  gz = join(work, "image.raw.gz");
  writeFileSync(gz, Bun.gzipSync(readFileSync(image), { level: 1 }));
  key = makeKey(join(work, "key"), "snf-image test <test@example.org>");
  stranger = makeKey(join(work, "stranger"), "someone else <else@example.org>");
  mkdirSync(join(work, "dirs"));
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const p = decodeURIComponent(new URL(req.url).pathname);
      if (p.includes("..")) return new Response("no", { status: 400 });
      const f = Bun.file(join(work, "dirs", p));
      return (await f.exists()) ? new Response(f) : new Response("not found", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
  expect(readFileSync(join(HELPER_DIR, "manifest.json")).length).toBeGreaterThan(0);
}, 60_000);

afterAll(() => {
  server?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

const required = () => ({ IMAGE_VERIFY: "required", IMAGE_KEYRING: key.keyring });
const ifPresent = () => ({ IMAGE_VERIFY: "if-present", IMAGE_KEYRING: key.keyring });

describe("IMAGE_VERIFY, local images", () => {
  test("good: detached SHA256SUMS.gpg, required → verified during the copy (raw and gzip), helper runs", async () => {
    const dir = imageDir("good", true);
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine("0".repeat(64), "other.img") + sumsLine(hex("sha256", image), "img") + sumsLine(hex("sha256", gz), "img.gz"));
    key.signDetached(join(dir, "SHA256SUMS"), ".gpg");
    const disk = freshDisk("good");
    const r = await create(disk, dir, required());
    expect(r.output).toContain(`SHA256SUMS signed by ${key.fingerprint}`);
    expect(r.output).toContain(`image local://img: sha256 matches local://SHA256SUMS (${IMAGE_BYTES} bytes)`);
    reachedHelper(r, disk);
    // A compressed local file: hashed as stored while gzip decompresses it.
    const disk2 = freshDisk("good-gz");
    const r2 = await create(disk2, dir, required(), "img.gz");
    expect(r2.output).toContain(`image local://img.gz: sha256 matches local://SHA256SUMS (${readFileSync(gz).length} bytes)`);
    reachedHelper(r2, disk2);
  }, 180_000);

  test("bad hash (signed sums, image changed): fails after the copy, before the helper; the disk's ends are zeroed", async () => {
    const dir = imageDir("badhash");
    writeFileSync(join(dir, "SHA512SUMS"), sumsLine("e".repeat(128), "img"));
    key.signDetached(join(dir, "SHA512SUMS"), ".sign");
    for (const [policy, cfg] of [
      ["required", required()],
      ["if-present", ifPresent()],
    ] as const) {
      const disk = freshDisk(`badhash-${policy}`);
      const fd = openSync(disk, "r+");
      writeSync(fd, Buffer.alloc(MiB, 0x55), 0, MiB, DISK_BYTES - MiB); // something for the wipe to clear at the end
      closeSync(fd);
      const r = await create(disk, dir, cfg);
      expect(r.code).toBe(1);
      expect(r.lastLine).toMatch(/^snf-image create: ERROR: image local:\/\/img does not match local:\/\/SHA512SUMS: sha512 [0-9a-f]{16}… expected e{16}…; the disk's first and last MiB were zeroed$/);
      expect(r.output).not.toContain("helper VM:");
      expect(readAt(disk, 0, MiB).every((b) => b === 0)).toBe(true);
      expect(readAt(disk, DISK_BYTES - MiB, MiB).every((b) => b === 0)).toBe(true);
      // What lies between is the unverified image (documented).
      expect(readAt(disk, MiB, 4096).equals(readAt(image, MiB, 4096))).toBe(true);
    }
  }, 120_000);

  test("bad signature: armored .asc over a sums file changed afterwards → refused before the copy", async () => {
    const dir = imageDir("badsig");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine("1".repeat(64), "img"));
    key.signDetached(join(dir, "SHA256SUMS"), ".asc");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine(hex("sha256", image), "img")); // the attacker's edit
    for (const cfg of [required(), ifPresent()]) {
      const disk = freshDisk("badsig");
      refusedBeforeCopy(await create(disk, dir, cfg), disk, "local://SHA256SUMS.asc: BAD signature");
    }
  }, 60_000);

  test("signed by a key that is not in IMAGE_KEYRING → refused before the copy", async () => {
    const dir = imageDir("stranger");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine(hex("sha256", image), "img"));
    stranger.clearsign(join(dir, "SHA256SUMS"));
    const disk = freshDisk("stranger");
    refusedBeforeCopy(await create(disk, dir, required()), disk, `signed by key ${stranger.fingerprint.slice(-16)} which is not in IMAGE_KEYRING`);
  }, 60_000);

  test("missing signature: refused under required and if-present, ignored under off", async () => {
    const dir = imageDir("unsigned");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine("2".repeat(64), "img")); // wrong, and nobody vouches for it
    for (const cfg of [required(), ifPresent()]) {
      const disk = freshDisk("unsigned");
      refusedBeforeCopy(await create(disk, dir, cfg), disk, "local://SHA256SUMS is not signed: no SHA256SUMS.gpg, SHA256SUMS.sign, SHA256SUMS.asc next to it and not clearsigned");
    }
    const disk = freshDisk("unsigned-off");
    const r = await create(disk, dir, { IMAGE_VERIFY: "off", IMAGE_KEYRING: key.keyring });
    expect(r.output).not.toContain("SHA256SUMS");
    reachedHelper(r, disk);
  }, 120_000);

  test("no sums file: required refuses, if-present deploys unverified", async () => {
    const dir = imageDir("nosums");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine("3".repeat(64), "another-image")); // lists other images only
    const disk = freshDisk("nosums");
    refusedBeforeCopy(await create(disk, dir, required()), disk, "IMAGE_VERIFY=required: no SHA512SUMS or SHA256SUMS in local:// lists image local://img");
    const r = await create(disk, dir, ifPresent());
    expect(r.output).toContain("image local://img is not verified: no SHA512SUMS or SHA256SUMS in local:// lists it (IMAGE_VERIFY=if-present)");
    reachedHelper(r, disk);
  }, 120_000);

  test("a sums file that lists the image while IMAGE_KEYRING is unset is refused; so is a junk sums file", async () => {
    const dir = imageDir("nokeyring");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine(hex("sha256", image), "img"));
    key.clearsign(join(dir, "SHA256SUMS"));
    const disk = freshDisk("nokeyring");
    refusedBeforeCopy(await create(disk, dir, { IMAGE_VERIFY: "if-present" }), disk, "lists image local://img but IMAGE_KEYRING is not set");
    // Signed, but with a line that is not an entry: strict parsing, one line naming where.
    const junk = imageDir("junk");
    writeFileSync(join(junk, "SHA256SUMS"), `${sumsLine(hex("sha256", image), "img")}rm -rf /\n`);
    key.clearsign(join(junk, "SHA256SUMS"));
    refusedBeforeCopy(await create(disk, junk, required()), disk, 'local://SHA256SUMS:2: not a "SHA256 NAME" line');
  }, 60_000);
});

describe("IMAGE_VERIFY, qcow2", () => {
  test("a local qcow2 is hashed in one pass before its tables are parsed: good deploys, bad is refused with the disk untouched", async () => {
    const dir = imageDir("qcow");
    const q = join(dir, "img.qcow2");
    const conv = Bun.spawnSync(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", image, q], { stderr: "pipe" });
    expect(conv.stderr.toString()).toBe("");
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine(hex("sha256", q), "img.qcow2") + sumsLine("4".repeat(64), "img"));
    key.signDetached(join(dir, "SHA256SUMS"), ".gpg");
    const disk = freshDisk("qcow");
    const r = await runCreate({
      disks: [disk],
      imageDir: dir,
      osp: { img_id: "img.qcow2", img_format: "qcow2" },
      config: { HELPER_ACCEL: "tcg", HELPER_SOFT_TIMEOUT: "1", HELPER_HARD_TIMEOUT: "5", ...required() },
      extraEnv: { TMPDIR: runTmp },
    });
    expect(r.output).toContain(`image local://img.qcow2: sha256 matches local://SHA256SUMS (${readFileSync(q).length} bytes)`);
    reachedHelper(r, disk);
    // Over http a qcow2 is read by ranges, which cannot be hashed as they stream: refused, disk untouched.
    const webDisk = freshDisk("qcow-web");
    refusedBeforeCopy(await create(webDisk, dir, required(), `${base}/qcow/img.qcow2`), webDisk, `image ${base}/qcow/img.qcow2 is qcow2 read by HTTP ranges, which IMAGE_VERIFY cannot hash as it streams`);
    // The same sums file says something else for the raw name: rename the qcow2 to it.
    const bad = imageDir("qcowbad");
    rmSync(join(bad, "img"));
    linkSync(q, join(bad, "img"));
    writeFileSync(join(bad, "SHA256SUMS"), sumsLine("4".repeat(64), "img"));
    key.signDetached(join(bad, "SHA256SUMS"), ".gpg");
    const disk2 = freshDisk("qcowbad");
    const r2 = await runCreate({
      disks: [disk2],
      imageDir: bad,
      osp: { img_id: "img", img_format: "qcow2" },
      config: { HELPER_ACCEL: "tcg", ...required() },
      extraEnv: { TMPDIR: runTmp },
    });
    refusedBeforeCopy(r2, disk2, /image local:\/\/img does not match local:\/\/SHA256SUMS: sha256 [0-9a-f]{16}… expected 4{16}…; the disk was not touched$/);
    expect(r2.output).not.toContain("qcow2 v3");
  }, 180_000);
});

describe("IMAGE_VERIFY, http images", () => {
  test("clearsigned SHA512SUMS next to a gzip image URL: hashed as stored while it is decompressed onto the disk", async () => {
    imageDir("web", true);
    const dir = join(work, "dirs", "web");
    writeFileSync(join(dir, "SHA512SUMS"), sumsLine(hex("sha512", gz), "img.gz") + sumsLine(hex("sha512", image), "img"));
    key.clearsign(join(dir, "SHA512SUMS"));
    const disk = freshDisk("web");
    const r = await create(disk, dir, required(), `${base}/web/img.gz`);
    expect(r.output).toContain(`image ${base}/web/img.gz: SHA512SUMS signed by ${key.fingerprint}`);
    expect(r.output).toContain(`sha512 matches ${base}/web/SHA512SUMS (${readFileSync(gz).length} bytes)`);
    reachedHelper(r, disk);
  }, 180_000);

  test("bad hash over http: refused after the copy with the disk wiped; missing sums under required: refused before", async () => {
    const dir = imageDir("webbad", true);
    writeFileSync(join(dir, "SHA256SUMS"), sumsLine(hex("sha256", image), "img.gz")); // the raw image's hash, not the stored file's
    key.signDetached(join(dir, "SHA256SUMS"), ".gpg");
    const disk = freshDisk("webbad");
    const r = await create(disk, dir, required(), `${base}/webbad/img.gz`);
    expect(r.code).toBe(1);
    expect(r.lastLine).toContain(`image ${base}/webbad/img.gz does not match ${base}/webbad/SHA256SUMS: sha256`);
    expect(readAt(disk, 0, MiB).every((b) => b === 0)).toBe(true);
    const disk2 = freshDisk("webnone");
    refusedBeforeCopy(await create(disk2, dir, required(), `${base}/nothing-here/img`), disk2, /ERROR: (cannot reach )?image URL .*nothing-here\/img: HTTP 404/);
    // A sums file larger than the bound is refused while it downloads.
    const big = imageDir("webbig");
    writeFileSync(join(big, "SHA256SUMS"), sumsLine(hex("sha256", image), "img").repeat(20_000));
    refusedBeforeCopy(await create(disk2, dir, required(), `${base}/webbig/img`), disk2, `sums file ${base}/webbig/SHA256SUMS: larger than 1048576 bytes`);
    imageDir("webnosums"); // the image, no sums file: both names answer 404
    refusedBeforeCopy(await create(disk2, dir, required(), `${base}/webnosums/img`), disk2, `no SHA512SUMS or SHA256SUMS in ${base}/webnosums/ lists image ${base}/webnosums/img`);
  }, 120_000);
});


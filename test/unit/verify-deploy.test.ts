/**
 * Pure parts of IMAGE_VERIFY (sums parsing, gpgv status lines) and of
 * `snf-image deploy` (command line → DeployInput, progress rendering).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildInput, imagePath, parseNic, repeated, type DeployArgs } from "../../src/commands/deploy.ts";
import { summarizeStatus } from "../../src/image/gpgv.ts";
import { isClearsigned, parseSums } from "../../src/image/sums.ts";
import { copyLine, openTerminalMonitor } from "../../src/progress.ts";

const H256 = "a".repeat(64);
const H512 = "b".repeat(128);

describe("sums files", () => {
  test("GNU text and binary entries, ./ prefix, blank lines, CRLF", () => {
    const m = parseSums(`${H256}  debian.raw\n${"C".repeat(64)} *ubuntu.img\r\n\n${"1".repeat(64)}  ./sub.img\n`, "sha256", "SHA256SUMS");
    expect(m.get("debian.raw")).toBe(H256);
    expect(m.get("ubuntu.img")).toBe("c".repeat(64));
    expect(m.get("sub.img")).toBe("1".repeat(64));
  });
  test("strict: wrong hash length, junk lines, control characters, escaped names, conflicting duplicates", () => {
    expect(() => parseSums(`${H512}  x\n`, "sha256", "SHA256SUMS")).toThrow("SHA256SUMS:1: not a");
    expect(() => parseSums(`${H256}  x\n`, "sha512", "SHA512SUMS")).toThrow("SHA512SUMS:1: not a");
    expect(() => parseSums(`${H256}  x\nhello\n`, "sha256", "S")).toThrow("S:2:");
    expect(() => parseSums(`${H256}  a\x1b[2Jb\n`, "sha256", "S")).toThrow("S:1:");
    expect(() => parseSums(`${H256}  \\x\n`, "sha256", "S")).toThrow("S:1:");
    expect(() => parseSums(`${H256}  x\n${"0".repeat(64)}  x\n`, "sha256", "S")).toThrow("twice");
    expect(parseSums(`${H256}  x\n${H256}  x\n`, "sha256", "S").size).toBe(1);
  });
  test("clearsigned files are recognized by their first line", () => {
    expect(isClearsigned(new TextEncoder().encode("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n"))).toBe(true);
    expect(isClearsigned(new TextEncoder().encode(`${H256}  x\n`))).toBe(false);
  });
});

describe("gpgv status lines", () => {
  const fpr = "D833DC10E326932EEE6B19BEFAE54996D2CCD7B6";
  test("a good signature", () => {
    const s = summarizeStatus(`[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG FAE54996D2CCD7B6 Test <t@example.org>\n[GNUPG:] VALIDSIG ${fpr} 2026-11-29 1795993797 0 4 0 22 8 00 ${fpr}\n`);
    expect(s).toMatchObject({ valid: [fpr], bad: false, sawSignature: true });
  });
  test("bad, expired, revoked and unknown keys are told apart; human text is ignored", () => {
    expect(summarizeStatus("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG FAE54996D2CCD7B6 Test\n").bad).toBe(true);
    expect(summarizeStatus("[GNUPG:] EXPKEYSIG FAE54996D2CCD7B6 Test\n").expired).toBe(true);
    expect(summarizeStatus("[GNUPG:] REVKEYSIG FAE54996D2CCD7B6 Test\n").revoked).toBe(true);
    expect(summarizeStatus("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG FAE54996D2CCD7B6 22 8 00 1795993797 9 -\n[GNUPG:] NO_PUBKEY FAE54996D2CCD7B6\n").missingKeys).toEqual(["FAE54996D2CCD7B6"]);
    expect(summarizeStatus(`gpgv: Good signature\nVALIDSIG ${fpr}\n [GNUPG:] VALIDSIG ${fpr}\n`).valid).toEqual([]);
  });
});

describe("snf-image deploy command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "snf-deploy-unit-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base: DeployArgs = { image: "debian", disk: join(dir, "vm1.img"), format: "diskdump", askPassword: false, properties: [], personality: [], nics: [] };

  test("repeatable options keep every value", () => {
    expect(repeated(["img", "--property", "A=1", "--property=B=2", "--json", "--", "--property", "C"], "property")).toEqual(["A=1", "B=2"]);
    expect(() => repeated(["--nic"], "nic")).toThrow("--nic needs a value");
  });

  test("builds the same parameters create gets from Ganeti", async () => {
    const pw = join(dir, "pw");
    writeFileSync(pw, "s3cret pass\n");
    const motd = join(dir, "motd");
    writeFileSync(motd, "hi\n");
    const input = await buildInput({
      ...base,
      hostname: "web1.example.org",
      passwordFile: pw,
      properties: ["USERS=root", "swap=512"],
      personality: [`${motd}:/etc/motd:0644`],
      nics: ["mac=52:54:00:AA:bb:01,ip=10.0.0.5,subnet=10.0.0.0/24,gateway=10.0.0.1,tags=dhcp+nfdhcpd"],
    });
    expect(input.instance!.name).toBe("web1.example.org");
    expect(input.disks).toEqual([{ index: 0, path: base.disk, access: "rw" }]);
    expect(input.osp).toMatchObject({ img_id: "debian", img_format: "diskdump", img_passwd: "s3cret pass" });
    expect(JSON.parse(input.osp.img_properties!)).toEqual({ USERS: "root", SWAP: "512" });
    expect(JSON.parse(input.osp.img_personality!)).toEqual([{ path: "/etc/motd", contents: Buffer.from("hi\n").toString("base64"), owner: "root", group: "root", mode: 0o644 }]);
    expect(input.nics[0]).toMatchObject({ index: 0, mac: "52:54:00:aa:bb:01", ip: "10.0.0.5", network: { subnet: "10.0.0.0/24", gateway: "10.0.0.1", tags: ["dhcp", "nfdhcpd"] } });
    // Without --hostname the disk's file name is the host name.
    expect((await buildInput(base)).instance!.name).toBe("vm1");
  });

  test("IMAGE as a path: its directory is IMAGE_DIR for the run; names and URLs are not paths", async () => {
    const img = join(dir, "my.raw");
    writeFileSync(img, "x");
    const viaPath = await buildInput({ ...base, image: `${dir}/./my.raw` });
    expect(viaPath.osp.img_id).toBe("my.raw");
    expect(viaPath.imageDir).toBe(realpathSync(dir));
    expect(imagePath("my.raw")).toBeNull(); // no '/': a name in IMAGE_DIR
    expect(imagePath("http://example.org/my.raw")).toBeNull();
    expect(imagePath(`${dir}/missing.raw`)).toBeNull(); // then IMAGE_DIR decides (and names what it tried)
    expect((await buildInput(base)).imageDir).toBeUndefined();
  });

  test("bad input: one line naming the option", async () => {
    await expect(buildInput({ ...base, format: "qcow9" })).rejects.toThrow('--format "qcow9" is not one of');
    await expect(buildInput({ ...base, hostname: "bad_name!" })).rejects.toThrow("--hostname must be a host name");
    await expect(buildInput({ ...base, passwordFile: join(dir, "missing") })).rejects.toThrow("--password-file");
    await expect(buildInput({ ...base, properties: ["no-equals"] })).rejects.toThrow("--property must be KEY=VALUE");
    await expect(buildInput({ ...base, personality: ["relative:etc/x"] })).rejects.toThrow("--personality must be");
    expect(() => parseNic("ip=10.0.0.1", 0)).toThrow("--nic 0:");
    expect(() => parseNic("mac=52:54:00:00:00:01,colour=red", 1)).toThrow("--nic 1: unknown key");
    expect(() => parseNic("mac=52:54:00:00:00:01,ip=300.1.1.1", 2)).toThrow("--nic 2: not an IPv4 address");
  });
});

describe("progress rendering", () => {
  test("copy line: bar, percent, bytes, rate and ETA", () => {
    const l = copyLine(512 * 1024 * 1024, 1024 * 1024 * 1024, 4000, 100);
    expect(l).toMatch(/^copy \[#+-+\]  50%  512\.0 MiB\/1\.0 GiB  128\.0 MiB\/s  ETA 0:04$/);
  });
  test("tty: redraws one line, prints log lines above it, ends on a clean line; no control bytes from the helper", () => {
    let out = "";
    let t = 0;
    const m = openTerminalMonitor("tty", { write: (s) => void (out += s), columns: 100 }, () => t);
    m.copyProgress(0, 100 * 1024 * 1024);
    t = 1000;
    m.copyProgress(50 * 1024 * 1024, 100 * 1024 * 1024);
    m.above("a log line");
    m.copyProgress(100 * 1024 * 1024, 100 * 1024 * 1024, true);
    m.helperEvent({ kind: "TASK_START", task: "FixPartitionTable" });
    m.helperEvent({ kind: "WARNING", text: "evil\x1b]0;title\x07text" });
    m.helperEvent({ kind: "TASK_END", task: "FixPartitionTable", ms: 10 });
    m.end({ ok: true, summary: {}, text: "deployed" });
    expect(out).toContain("\r\x1b[Kcopy [");
    expect(out).toContain("\r\x1b[Ka log line\n");
    expect(out).toContain("helper [1 done] FixPartitionTable ok");
    expect(out).not.toContain("\x1b]");
    expect(out.endsWith("\r\x1b[Kdeployed\n")).toBe(true);
  });
  test("json: one object a line with event names", () => {
    let out = "";
    const m = openTerminalMonitor("json", { write: (s) => void (out += s) });
    m.copyProgress(10, 10, true);
    m.helperEvent({ kind: "TASK_END", task: "AddSwap", ms: 5 });
    m.end({ ok: false, error: "boom" });
    const events = out.trim().split("\n").map((l) => JSON.parse(l));
    expect(events.map((e) => e.event)).toEqual(["copy", "task-end", "error"]);
    expect(events[0]).toMatchObject({ bytes: 10, total: 10, done: true });
    expect(events[2]).toMatchObject({ ok: false, message: "boom" });
  });
});

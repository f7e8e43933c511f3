/**
 * Issue 11, Windows side: the SYSTEM hive edit (helper/lib/hive.ts) against
 * hives made by Debian's hivexsh and read back with hivexget; the
 * DisableRemoteDesktopConnections restore; windows-legacy sysprep.inf;
 * os_answer_file; personality files on Windows; the CUSTOM_TASK environment;
 * an unknown OSFAMILY. Files-only roots (the NTFS path is proven by
 * test/integration/windows-compat.test.ts through a real helper boot).
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fakeCtx, type FakeCtx, type FakeRoot } from "./helper-fixtures.ts";
import type { HelperParamsInput } from "../../src/protocol.ts";
import { currentControlSet, Hive } from "../../helper/lib/hive.ts";
import { hivexget, writeEmptyHive, writeSystemHive } from "../lib/hive.ts";
import { task as installUnattend } from "../../helper/tasks/InstallUnattend.ts";
import { task as assignHostname } from "../../helper/tasks/AssignHostname.ts";
import { task as changePassword } from "../../helper/tasks/ChangePassword.ts";
import { task as disableRdp } from "../../helper/tasks/DisableRemoteDesktopConnections.ts";
import { task as personality } from "../../helper/tasks/EnforcePersonality.ts";
import { customTaskEnv } from "../../helper/tasks/RunCustomTask.ts";
import { iniGet, iniSet, timezoneIndex } from "../../helper/os/windows-legacy.ts";
import { generatedUnattend, RDP_BLOCK_BEGIN, RDP_BLOCK_END } from "../../helper/os/windows.ts";
import { resolveRoot } from "../../helper/os/detect.ts";
import { makeProps } from "../../helper/props.ts";

const TS = "\\ControlSet002\\Control\\Terminal Server";
const GENERALIZED = "[_CLEAN_]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n";
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "snf-wincompat-"));
  dirs.push(d);
  return d;
}

function winRoot(o: { legacy?: boolean; sealed?: boolean; deny?: number; files?: Record<string, string> } = {}): FakeRoot {
  const dir = tmp();
  const root = path.join(dir, "root");
  const scratch = path.join(dir, "scratch");
  fs.mkdirSync(scratch, { recursive: true });
  const write = (p: string, text: string | Buffer) => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), text);
  };
  fs.mkdirSync(path.join(root, "Windows/System32/config"), { recursive: true });
  if (o.legacy) write("/boot.ini", "[boot loader]\r\n");
  else {
    fs.mkdirSync(path.join(root, "Windows/Panther"), { recursive: true });
    write("/Windows/Setup/State/State.ini", GENERALIZED);
  }
  writeSystemHive(path.join(root, "Windows/System32/config/SYSTEM"), { current: 2, deny: o.deny ?? 0, sealed: o.legacy ? (o.sealed ?? true) : undefined });
  for (const [p, t] of Object.entries(o.files ?? {})) write(p, t);
  return { dir, root, scratch, write, read: (p) => fs.readFileSync(path.join(root, p), "utf8"), cleanup: () => {} };
}

function ctxOf(fr: FakeRoot, family: "windows" | "windows-legacy", p: Partial<HelperParamsInput> = {}): FakeCtx {
  return fakeCtx(fr, { hostname: "win1.example.org", imgFormat: "ntfsdump", ...p }, { family, distro: "unknown" });
}

describe("lib/hive.ts against hivex", () => {
  test("reads Select\\Current and writes fDenyTSConnections in place; hivexget sees it, the other control set is untouched", () => {
    const f = path.join(tmp(), "SYSTEM");
    writeSystemHive(f, { current: 2, deny: 0 });
    const before = fs.statSync(f).size;
    const h = Hive.open(f, { write: true });
    expect(currentControlSet(h)).toBe("ControlSet002");
    expect(h.getDword("ControlSet002\\Control\\Terminal Server", "fdenytsconnections")).toBe(0);
    expect(h.setDword("ControlSet002\\Control\\Terminal Server", "fDenyTSConnections", 1)).toBe(0);
    h.close();
    expect(hivexget(f, TS, "fDenyTSConnections")).toBe("1");
    expect(hivexget(f, TS, "AllowRemoteRPC")).toBe("0");
    expect(hivexget(f, "\\ControlSet001\\Control\\Terminal Server", "fDenyTSConnections")).toBe("1");
    expect(fs.statSync(f).size).toBe(before);
  });

  test("hostile hives fail with one line, never a crash or a hang", () => {
    const d = tmp();
    const f = path.join(d, "SYSTEM");
    fs.writeFileSync(f, Buffer.alloc(9000, 0x41));
    expect(() => Hive.open(f)).toThrow(/not a registry hive/);
    writeEmptyHive(f);
    const b = fs.readFileSync(f);
    b.writeUInt32LE(7, 4); // primary sequence != secondary: dirty
    let sum = 0;
    for (let i = 0; i < 0x1fc; i += 4) sum = (sum ^ b.readUInt32LE(i)) >>> 0;
    b.writeUInt32LE(sum, 0x1fc);
    fs.writeFileSync(f, b);
    expect(() => Hive.open(f)).toThrow(/not cleanly closed/);
    b.writeUInt32LE(1, 4);
    fs.writeFileSync(f, b);
    expect(() => Hive.open(f)).toThrow(/checksum/);
    // a root cell offset pointing outside the bins
    writeEmptyHive(f);
    const c = fs.readFileSync(f);
    c.writeUInt32LE(0x7ffffff8, 0x24);
    sum = 0;
    for (let i = 0; i < 0x1fc; i += 4) sum = (sum ^ c.readUInt32LE(i)) >>> 0;
    c.writeUInt32LE(sum, 0x1fc);
    fs.writeFileSync(f, c);
    const h = Hive.open(f);
    expect(() => h.key("Select")).toThrow(/corrupt registry hive \(cell offset/);
    h.close();
    // random garbage after a valid header: every lookup fails cleanly
    writeSystemHive(f, { current: 1, deny: 0 });
    const g = fs.readFileSync(f);
    for (let i = 4096 + 32; i < g.length; i += 7) g[i] = (i * 131) & 0xff;
    fs.writeFileSync(f, g);
    const h2 = Hive.open(f);
    expect(() => currentControlSet(h2)).toThrow(/corrupt registry hive|no Select/);
    h2.close();
  });
});

/** A hive whose root has `n` values that all point at one 1 MiB value cell (reading it n times would never end). */
function amplifyingHive(file: string, n: number): void {
  writeEmptyHive(file);
  const head = fs.readFileSync(file).subarray(0, 4096);
  const listOff = 0x1000;
  const listSize = Math.ceil((4 + n * 4) / 8) * 8;
  const bigOff = listOff + listSize;
  const bigSize = 1 << 20;
  const binsSize = Math.ceil((bigOff + bigSize) / 4096) * 4096;
  const bins = Buffer.alloc(binsSize);
  fs.readFileSync(file).copy(bins, 0, 4096, 8192);
  bins.writeUInt32LE(n, 0x20 + 4 + 0x24);
  bins.writeUInt32LE(listOff, 0x20 + 4 + 0x28);
  bins.writeInt32LE(-listSize, listOff);
  for (let i = 0; i < n; i++) bins.writeUInt32LE(bigOff, listOff + 4 + i * 4);
  bins.writeInt32LE(-bigSize, bigOff);
  bins.write("vk", bigOff + 4, "latin1");
  head.writeUInt32LE(binsSize, 0x28);
  let sum = 0;
  for (let i = 0; i < 0x1fc; i += 4) sum = (sum ^ head.readUInt32LE(i)) >>> 0;
  head.writeUInt32LE(sum, 0x1fc);
  fs.writeFileSync(file, Buffer.concat([head, bins]));
}

describe("lib/hive.ts bounds", () => {
  test("a hive that makes every value read the same 1 MiB cell stops at the read budget", () => {
    const f = path.join(tmp(), "SYSTEM");
    amplifyingHive(f, 100_000);
    const h = Hive.open(f);
    expect(() => h.values(h.rootOffset)).toThrow(/corrupt registry hive \(more than 64 MiB read\)/);
    h.close();
  });
});

describe("DisableRemoteDesktopConnections", () => {
  test("windows: hive value 1, SetupComplete.cmd restores the old value in its own block", async () => {
    const fr = winRoot({ deny: 0 });
    await disableRdp.run(ctxOf(fr, "windows"));
    expect(hivexget(path.join(fr.root, "Windows/System32/config/SYSTEM"), TS, "fDenyTSConnections")).toBe("1");
    const sc = fr.read("/Windows/Setup/Scripts/SetupComplete.cmd");
    expect(sc.split("\r\n")).toEqual([
      "@echo off",
      RDP_BLOCK_BEGIN,
      'reg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server" /v fDenyTSConnections /t REG_DWORD /d 0 /f',
      RDP_BLOCK_END,
      "",
    ]);
    // a second run (same block replaced, not duplicated) restores what the image had, not our 1
    await disableRdp.run(ctxOf(fr, "windows"));
    expect(fr.read("/Windows/Setup/Scripts/SetupComplete.cmd").split(RDP_BLOCK_BEGIN).length).toBe(2);
  });

  test("a hive without the value or without the hive: one line, the image untouched", async () => {
    const fr = winRoot();
    fs.rmSync(path.join(fr.root, "Windows/System32/config/SYSTEM"));
    await expect(disableRdp.run(ctxOf(fr, "windows"))).rejects.toThrow(/has no Windows\\System32\\config\\SYSTEM hive/);
    writeEmptyHive(path.join(fr.root, "Windows/System32/config/SYSTEM"));
    await expect(disableRdp.run(ctxOf(fr, "windows"))).rejects.toThrow(/no Select\\Current/);
    expect(fs.existsSync(path.join(fr.root, "Windows/Setup/Scripts/SetupComplete.cmd"))).toBe(false);
  });
});

describe("os_answer_file and WINDOWS_TIMEZONE", () => {
  test("os_answer_file replaces the image's answer files and gets the computer name", async () => {
    const mine = '<?xml version="1.0" encoding="utf-8"?>\n<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="oobeSystem"/><!-- from the user --></unattend>\n';
    const fr = winRoot({ files: { "/Windows/Panther/Unattend.xml": '<unattend xmlns="urn:schemas-microsoft-com:unattend"/>' } });
    const ctx = ctxOf(fr, "windows", { answerFile: Buffer.from(mine).toString("base64") });
    await installUnattend.run(ctx);
    await assignHostname.run(ctx);
    expect(fs.existsSync(path.join(fr.root, "Windows/Panther/Unattend.xml"))).toBe(false);
    const text = fr.read("/unattend.xml");
    expect(text).toContain("<!-- from the user -->");
    expect(text).toContain("<ComputerName>win1</ComputerName>");
  });

  test("an os_answer_file that is not an answer file fails with one line", async () => {
    const fr = winRoot();
    await expect(installUnattend.run(ctxOf(fr, "windows", { answerFile: Buffer.from("<html>").toString("base64") }))).rejects.toThrow(/os_answer_file is not well-formed XML/);
  });

  test("the generated unattend.xml carries the time zone; sysprep.inf its index", async () => {
    expect(generatedUnattend("W. Europe Standard Time")).toContain("<TimeZone>W. Europe Standard Time</TimeZone>");
    const fr = winRoot();
    await installUnattend.run(ctxOf(fr, "windows", { windowsTimezone: "Pacific Standard Time" }));
    expect(fr.read("/unattend.xml")).toContain("<TimeZone>Pacific Standard Time</TimeZone>");
    const lr = winRoot({ legacy: true });
    await installUnattend.run(ctxOf(lr, "windows-legacy"));
    expect(iniGet(lr.read("/sysprep/sysprep.inf"), "GuiUnattended", "TimeZone")).toBe("085");
  });
});

describe("windows-legacy", () => {
  test("sysprep.inf: ComputerName, ProductKey, AdminPassword, InstallFilesPath; other users via cmdlines.txt; RDP restore there", async () => {
    const fr = winRoot({
      legacy: true,
      files: { "/SYSPREP/Sysprep.inf": "; mine\r\n[Unattended]\r\nInstallFilesPath=D:\\i386\r\n[UserData]\r\nComputerName=OLD\r\nOrgName=\"Org\"\r\n" },
    });
    const ctx = ctxOf(fr, "windows-legacy", { password: "S3cret!x", osProductKey: "abcde-12345-fghij-67890-klmno", properties: { USERS: "Administrator helpdesk" } });
    await installUnattend.run(ctx);
    await assignHostname.run(ctx);
    await changePassword.run(ctx);
    await disableRdp.run(ctx);
    const inf = fr.read("/SYSPREP/Sysprep.inf");
    expect(inf.startsWith("; mine\r\n")).toBe(true);
    expect(iniGet(inf, "UserData", "ComputerName")).toBe("win1");
    expect(iniGet(inf, "UserData", "OrgName")).toBe('"Org"');
    expect(iniGet(inf, "UserData", "ProductKey")).toBe('"ABCDE-12345-FGHIJ-67890-KLMNO"');
    expect(iniGet(inf, "GuiUnattended", "AdminPassword")).toBe('"S3cret!x"');
    expect(iniGet(inf, "Unattended", "InstallFilesPath")).toBe("C:\\sysprep\\i386");
    expect(iniGet(inf, "Unattended", "OemPreinstall")).toBe("Yes");
    expect(ctx.warnings.join("\n")).toContain("using the sysprep.inf found in the image");
    expect(fr.read("/SYSPREP/i386/$oem$/cmdlines.txt").split("\r\n")).toEqual([
      "[Commands]",
      '"cmd /c C:\\sysprep\\i386\\$oem$\\snfpw.cmd"',
      '"cmd /c C:\\sysprep\\i386\\$oem$\\snfrdp.cmd"',
      "",
    ]);
    const pw = fr.read("/SYSPREP/i386/$oem$/snfpw.cmd");
    expect(pw).toContain('net user "helpdesk" "S3cret!x" /ACTIVE:YES /EXPIRES:NEVER');
    expect(pw).not.toContain("Administrator");
    expect(fr.read("/SYSPREP/i386/$oem$/snfrdp.cmd")).toBe('@echo off\r\nreg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server" /v fDenyTSConnections /t REG_DWORD /d 0 /f\r\n');
    expect(hivexget(path.join(fr.root, "Windows/System32/config/SYSTEM"), TS, "fDenyTSConnections")).toBe("1");
  });

  test("an image sysprep did not seal fails with one line; OSFAMILY=windows on it names windows-legacy", async () => {
    const fr = winRoot({ legacy: true, sealed: false });
    await expect(installUnattend.run(ctxOf(fr, "windows-legacy"))).rejects.toThrow(/not sealed with sysprep .*MiniSetupInProgress=0/);
    await expect(installUnattend.run(ctxOf(fr, "windows"))).rejects.toThrow(/use OSFAMILY=windows-legacy/);
  });

  test("time zone indexes by registry name and by the index table's spellings", () => {
    expect(timezoneIndex("GMT Standard Time")).toBe("085");
    expect(timezoneIndex("GTB Standard Time")).toBe("130");
    expect(timezoneIndex("AUS Eastern Standard Time")).toBe("255");
    expect(timezoneIndex("A.U.S. Eastern Standard Time")).toBe("255");
    expect(timezoneIndex("E. Australia Standard Time")).toBe("260");
    expect(timezoneIndex("U.S. Mountain Standard Time")).toBe("015");
    expect(timezoneIndex("Fiji Islands Standard Time")).toBe("285");
    expect(timezoneIndex("Mars Standard Time")).toBeUndefined();
  });

  test("iniSet adds sections and keys, replaces duplicates", () => {
    expect(iniSet("", "UserData", "ComputerName", "A")).toBe("[UserData]\r\nComputerName=A\r\n");
    expect(iniSet("[UserData]\nx=1\ncomputername=B\nComputerName=C\n[Other]\ny=2\n", "UserData", "ComputerName", "A")).toBe("[UserData]\r\nx=1\r\nComputerName=A\r\n[Other]\r\ny=2\r\n");
    expect(iniSet("[A]\r\nx=1\r\n\r\n[B]\r\n", "A", "y", "2")).toBe("[A]\r\nx=1\r\ny=2\r\n\r\n[B]\r\n");
    expect(() => iniSet("", "A", "k", "v\r\n[B]")).toThrow();
  });
});

describe("personality on Windows", () => {
  test("written straight into place, path components matched case-insensitively, nothing outside the root", async () => {
    const fr = winRoot({ files: { "/Users/Public/Desktop/readme.txt": "old" } });
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const ctx = ctxOf(fr, "windows", {
      personality: [
        { path: "/users/public/desktop/README.TXT", contents: b64("new\r\n") },
        { path: "/ProgramData/snf/config.ini", contents: b64("[a]\r\n"), owner: "someone" },
      ],
    });
    await personality.run(ctx);
    expect(fr.read("/Users/Public/Desktop/readme.txt")).toBe("new\r\n");
    expect(fs.readdirSync(path.join(fr.root, "Users/Public/Desktop"))).toEqual(["readme.txt"]);
    expect(fr.read("/ProgramData/snf/config.ini")).toBe("[a]\r\n");
    fs.symlinkSync("/etc", path.join(fr.root, "evil"));
    const bad = ctxOf(fr, "windows", { personality: [{ path: "/evil/passwd", contents: b64("x") }] });
    // an absolute link resolves inside the image, as it would for Windows' own view of C:
    await personality.run(bad);
    expect(fs.readFileSync(path.join(fr.root, "etc/passwd"), "utf8")).toBe("x");
    expect(fs.readFileSync("/etc/passwd", "utf8")).not.toBe("x");
    for (const name of ["/a/b:c.txt", "/dir./x", "/x/tab\there", "/q?.txt"]) {
      await expect(personality.run(ctxOf(fr, "windows", { personality: [{ path: name, contents: b64("x") }] }))).rejects.toThrow(/is not a Windows file name/);
    }
    const up = ctxOf(fr, "windows", { personality: [{ path: "/../../outside.txt", contents: b64("x") }] });
    await personality.run(up);
    expect(fs.existsSync(path.join(fr.dir, "outside.txt"))).toBe(false);
  });
});

describe("CUSTOM_TASK environment", () => {
  test("the original's SNF_IMAGE_* names", () => {
    const fr = winRoot();
    const ctx = ctxOf(fr, "windows", {
      password: "pw",
      properties: { OSFAMILY: "windows", CUSTOM_TASK: "eA==" },
      nics: [{ index: 0, mac: "aa:00:00:00:00:01", ip: "192.0.2.5", mode: "routed", link: "100", network: { name: "n", subnet: "192.0.2.0/24", gateway: "192.0.2.1", tags: ["dhcp", "x"] } }],
      disks: [
        { index: 0, serial: "snf-disk0" },
        { index: 1, serial: "snf-disk1" },
      ],
    });
    ctx.disk = { ...ctx.disk, dev: "/dev/vda", partitions: [{ number: 1, dev: "/dev/vda1", startSector: 2048, sizeSectors: 100, type: "7", kind: "primary" }] };
    const env = customTaskEnv(ctx, { devOf: (s) => (s === "snf-disk1" ? "/dev/vdb" : undefined), answerFile: "/tmp/x/unattend.xml" });
    expect(env).toMatchObject({
      SNF_IMAGE_DEV: "/dev/vda",
      SNF_IMAGE_DEV_COUNT: "2",
      SNF_IMAGE_DEV_0: "/dev/vda",
      SNF_IMAGE_DEV_1: "/dev/vdb",
      SNF_IMAGE_TYPE: "ntfsdump",
      SNF_IMAGE_HOSTNAME: "win1.example.org",
      SNF_IMAGE_PASSWD: "pw",
      SNF_IMAGE_PROPERTY_OSFAMILY: "windows",
      SNF_IMAGE_RESIZE_PART: "1",
      SNF_IMAGE_TARGET: fr.root,
      SNF_IMAGE_NIC_COUNT: "1",
      SNF_IMAGE_NIC_0_MAC: "aa:00:00:00:00:01",
      SNF_IMAGE_NIC_0_IP: "192.0.2.5",
      SNF_IMAGE_NIC_0_NETWORK_SUBNET: "192.0.2.0/24",
      SNF_IMAGE_NIC_0_NETWORK_TAGS: "dhcp x",
      SNF_IMAGE_DEFAULT_NIC_CONFIG: "dhcp",
      SNF_IMAGE_UNATTEND: "/tmp/x/unattend.xml",
      SNF_IMAGE_OSFAMILY: "windows",
    });
    expect(Object.keys(env).every((k) => k.startsWith("SNF_IMAGE_"))).toBe(true);
    expect(env.SNF_IMAGE_PASSWD_HASH).toBeUndefined();
  });
});

describe("OSFAMILY", () => {
  test("an unknown family fails with one line; the BSD names are accepted", async () => {
    const disk = { dev: "/dev/x", sizeBytes: 0, sectorSize: 512, table: "msdos" as const, partitions: [{ number: 1, dev: "/dev/x1", startSector: 2048, sizeSectors: 1, type: "83" }] };
    await expect(resolveRoot(makeProps({ OSFAMILY: "solaris", ROOT_PARTITION: "1" }), disk, async () => undefined)).rejects.toThrow(/OSFAMILY "solaris" is not one of/);
    for (const f of ["freebsd", "openbsd", "netbsd", "windows-legacy"] as const) expect((await resolveRoot(makeProps({ OSFAMILY: f, ROOT_PARTITION: "1" }), disk, async () => undefined)).family).toBe(f);
  });
});

/**
 * Windows (NT 6.x+) customization on fake Windows trees in a plain
 * directory: InstallUnattend, AssignHostname and ChangePassword run against
 * the tree as they run against the ntfs-3g mount in the helper VM; the tests
 * read back the answer file, the password script and SetupComplete.cmd.
 * Nothing here boots Windows: it proves what is written, not what Windows
 * does with it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fakeCtx, type FakeCtx, type FakeRoot } from "./helper-fixtures.ts";
import type { HelperParamsInput } from "../../src/protocol.ts";
import { task as installUnattend } from "../../helper/tasks/InstallUnattend.ts";
import { task as assignHostname } from "../../helper/tasks/AssignHostname.ts";
import { task as changePassword } from "../../helper/tasks/ChangePassword.ts";
import { TASKS } from "../../helper/tasks/index.ts";
import { skipReason } from "../../helper/runner.ts";
import { makeProps } from "../../helper/props.ts";
import { attr, childElements, parseXml, serializeXml, textOf, XmlError, type XDocument, type XElement } from "../../helper/lib/xml.ts";
import { computerName, findCi, generatedUnattend, passwordScript } from "../../helper/os/windows.ts";

const PASSWORD = "S3cret-Pw!x%y";
const KEY = "ABCDE-12345-FGHIJ-67890-KLMNO";
const GENERALIZED = "[_CLEAN_]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n";

let roots: FakeRoot[] = [];
afterEach(() => {
  for (const r of roots) r.cleanup();
  roots = [];
});

/** A Windows-looking tree: Windows/System32, SysWOW64 unless x86, State.ini unless state is null. */
function winRoot(opts: { arch?: "amd64" | "x86"; state?: string | null; files?: Record<string, string | Buffer> } = {}): FakeRoot {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-win-test-"));
  const root = path.join(dir, "root");
  const scratch = path.join(dir, "scratch");
  fs.mkdirSync(scratch, { recursive: true });
  const write = (p: string, text: string | Buffer, mode = 0o644) => {
    const host = path.join(root, p);
    fs.mkdirSync(path.dirname(host), { recursive: true });
    fs.writeFileSync(host, text);
    fs.chmodSync(host, mode);
  };
  fs.mkdirSync(path.join(root, "Windows/System32/config"), { recursive: true });
  fs.mkdirSync(path.join(root, "Windows/Panther"), { recursive: true });
  if ((opts.arch ?? "amd64") === "amd64") fs.mkdirSync(path.join(root, "Windows/SysWOW64"));
  if (opts.state !== null) write("/Windows/Setup/State/State.ini", opts.state ?? GENERALIZED);
  for (const [p, t] of Object.entries(opts.files ?? {})) write(p, t);
  const fr: FakeRoot = { dir, root, scratch, write, read: (p) => fs.readFileSync(path.join(root, p), "utf8"), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
  roots.push(fr);
  return fr;
}

function winCtx(fr: FakeRoot, p: Partial<HelperParamsInput> = {}): FakeCtx {
  return fakeCtx(fr, { hostname: "win1.example.org", imgFormat: "ntfsdump", ...p }, { family: "windows", distro: "unknown" });
}

async function deploy(ctx: FakeCtx): Promise<void> {
  await installUnattend.run(ctx);
  await assignHostname.run(ctx);
  await changePassword.run(ctx);
}

const settings = (doc: XDocument, pass: string): XElement => childElements(doc.root, "settings").find((s) => attr(s, "pass") === pass)!;
const comp = (doc: XDocument, pass: string, name: string, arch: string): XElement | undefined =>
  childElements(settings(doc, pass), "component").find((c) => attr(c, "name") === name && attr(c, "processorArchitecture") === arch);
const child = (el: XElement | undefined, name: string): string | undefined => {
  const c = el && childElements(el, name)[0];
  return c ? textOf(c) : undefined;
};
function runSync(doc: XDocument, arch: string): { order: string; path: string; action?: string }[] {
  const d = comp(doc, "specialize", "Microsoft-Windows-Deployment", arch);
  if (!d) return [];
  return childElements(d, "RunSynchronous")
    .flatMap((r) => childElements(r, "RunSynchronousCommand"))
    .map((c) => ({ order: child(c, "Order")!, path: child(c, "Path")!, action: attr(c, "wcm:action") }));
}
const allFiles = (dir: string): string[] =>
  fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => fs.statSync(path.join(dir, f)).isFile());

describe("lib/xml", () => {
  const sample =
    '<?xml version="1.0" encoding="utf-8"?>\n<!-- keep me -->\n<unattend xmlns="urn:schemas-microsoft-com:unattend">\n  <settings pass="specialize">\n    <x a=\'1 &amp; 2\' b="&lt;q&gt;"><![CDATA[<raw>]]>t&amp;x&#65;</x>\n    <empty />\n  </settings>\n</unattend>\n';

  test("parses and writes back an untouched document byte for byte (attribute quoting aside)", () => {
    const doc = parseXml(sample);
    expect(serializeXml(doc)).toBe(sample.replace("a='1 &amp; 2'", 'a="1 &amp; 2"'));
    const x = childElements(settings(doc, "specialize"), "x")[0]!;
    expect(attr(x, "a")).toBe("1 & 2");
    expect(attr(x, "b")).toBe("<q>");
    expect(textOf(x)).toBe("<raw>t&xA");
  });

  test("refuses DOCTYPE, mismatched tags, unknown entities and a second root, naming the cause", () => {
    expect(() => parseXml('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')).toThrow(/DOCTYPE/);
    expect(() => parseXml("<a><b></a></b>")).toThrow(/closing tag <\/a> does not match <b>/);
    expect(() => parseXml("<a>&nbsp;</a>")).toThrow(/unknown entity &nbsp;/);
    expect(() => parseXml("<a/><b/>")).toThrow(/second root/);
    expect(() => parseXml("<a>")).toThrow(/<a> is not closed/);
    expect(() => parseXml("<a x=1/>")).toThrow(XmlError);
  });

  test("UTF-16LE with BOM is decoded and kept", () => {
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('<?xml version="1.0" encoding="utf-16"?><a>é</a>', "utf16le")]);
    const doc = parseXml(new Uint8Array(bytes));
    expect(doc.encoding).toBe("utf16le");
    expect(textOf(doc.root)).toBe("é");
  });
});

describe("os/windows", () => {
  test("computerName: short name kept when valid, otherwise derived with a note saying how", () => {
    expect(computerName("win1.example.org")).toEqual({ name: "win1" });
    expect(computerName("Web-01")).toEqual({ name: "Web-01" });
    const long = computerName("my_very_long_instance.example.org");
    expect(long.name).toBe("my-very-long-in");
    expect(long.note).toContain("replaced characters");
    expect(long.note).toContain("cut it to 15 characters");
    expect(computerName("12345")).toMatchObject({ name: "W12345" });
    expect(computerName("12345").note).toContain("all digits");
    expect(computerName("__x__.a").name).toBe("x");
    expect(() => computerName("___.example.org")).toThrow(/no usable Windows computer name/);
    for (const h of ["a".repeat(40), "ünïcode-name", "1234567890123456789", "a.b.c"]) {
      const n = computerName(h).name;
      expect(Buffer.byteLength(n)).toBeLessThanOrEqual(15);
      expect(n).toMatch(/^[A-Za-z0-9-]+$/);
      expect(n).not.toMatch(/^\d+$/);
    }
  });

  test("passwordScript: CRLF net user lines, quoted, % doubled; bad passwords and users refused", () => {
    expect(passwordScript(["Administrator", "ops"], "a%b c!&|<>^")).toBe(
      "@echo off\r\nrem Written by snf-image; SetupComplete.cmd overwrites and deletes this file.\r\n" +
        'net user "Administrator" "a%%b c!&|<>^" /ACTIVE:YES /EXPIRES:NEVER\r\nnet user "ops" "a%%b c!&|<>^" /ACTIVE:YES /EXPIRES:NEVER\r\n',
    );
    expect(() => passwordScript(["Administrator"], 'has"quote')).toThrow(/'"'/);
    expect(() => passwordScript(["Administrator"], "naïve")).toThrow(/printable ASCII/);
    expect(() => passwordScript(["Administrator"], "line\nbreak")).toThrow(/printable ASCII/);
    expect(() => passwordScript(["Administrator"], "x".repeat(128))).toThrow(/127/);
    expect(() => passwordScript(["Admin&calc"], "pw")).toThrow(/not a Windows user name/);
  });

  test("the generated answer file is well-formed with both architectures", () => {
    const doc = parseXml(generatedUnattend());
    for (const arch of ["amd64", "x86"]) {
      expect(child(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", arch), "ComputerName")).toBe("*");
      expect(runSync(doc, arch)).toHaveLength(1);
      expect(comp(doc, "oobeSystem", "Microsoft-Windows-Shell-Setup", arch)).toBeDefined();
    }
  });

  test("findCi matches Windows names case-insensitively", () => {
    const fr = winRoot();
    fs.rmSync(path.join(fr.root, "Windows/Panther"), { recursive: true });
    fr.write("/Windows/PANTHER/unattend.XML", "<unattend/>");
    expect(findCi(fr.root, "/windows/Panther/Unattend.xml")).toBe("/Windows/PANTHER/unattend.XML");
    expect(findCi(fr.root, "/Windows/System32")).toBe("/Windows/System32");
    expect(findCi(fr.root, "/Windows/Nope")).toBeUndefined();
  });
});

describe("InstallUnattend + AssignHostname + ChangePassword on a fake Windows tree", () => {
  test("no answer file in the image: a generated C:\\unattend.xml gets name, key and the password command", async () => {
    const fr = winRoot();
    const ctx = winCtx(fr, { password: PASSWORD, osProductKey: KEY.toLowerCase() });
    await deploy(ctx);
    expect(ctx.warnings).toEqual([]);

    const doc = parseXml(new Uint8Array(fs.readFileSync(path.join(fr.root, "unattend.xml"))));
    const shell = comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "amd64");
    expect(child(shell, "ComputerName")).toBe("win1");
    expect(child(shell, "ProductKey")).toBe(KEY);
    // the x86 component (ignored by a 64-bit Windows) is left alone
    expect(child(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "x86"), "ComputerName")).toBe("*");
    expect(runSync(doc, "amd64")).toEqual([
      { order: "1", path: expect.stringContaining("UnattendCreatedUser") as unknown as string, action: "add" },
      { order: "2", path: "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd", action: "add" },
    ]);

    const script = fr.read("/Windows/SnfScripts/ChangeAdminPassword.cmd");
    expect(script).toContain(`net user "Administrator" "S3cret-Pw!x%%y" /ACTIVE:YES /EXPIRES:NEVER\r\n`);
    expect(fs.statSync(path.join(fr.root, "Windows/SnfScripts/ChangeAdminPassword.cmd")).mode & 0o777).toBe(0o600);

    const sc = fr.read("/Windows/Setup/Scripts/SetupComplete.cmd");
    const lines = sc.split("\r\n");
    const xs = /^ {2}echo (X+)> "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd"$/.exec(lines.find((l) => l.includes("echo X"))!)!;
    expect(xs[1]!.length).toBeGreaterThanOrEqual(Buffer.byteLength(script));
    const order = (s: string) => lines.findIndex((l) => l.includes(s));
    expect(order("echo X")).toBeLessThan(order('del /Q /F "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd"'));
    expect(sc).toContain('if exist "C:\\unattend.xml" del /Q /F "C:\\unattend.xml"');
    expect(sc).toContain('del /Q /F "C:\\Windows\\Panther\\unattend.xml"');
    expect(sc).toContain('rmdir /Q "C:\\Windows\\SnfScripts"');
    expect(sc.startsWith("@echo off\r\n")).toBe(true);
    expect(sc).not.toMatch(/[^\r]\n/); // CRLF throughout

    // the password is in the script only
    const holders = allFiles(fr.root).filter((f) => fs.readFileSync(path.join(fr.root, f), "utf8").includes("S3cret-Pw"));
    expect(holders).toEqual(["Windows/SnfScripts/ChangeAdminPassword.cmd"]);
    expect([...ctx.infos, ...ctx.warnings].join("\n")).not.toContain("S3cret");
  });

  test("the image's own answer file (lower-case path, UTF-16) is kept and edited in place", async () => {
    const own =
      '<?xml version="1.0" encoding="utf-16"?>\r\n<unattend xmlns="urn:schemas-microsoft-com:unattend">\r\n  <!-- site settings -->\r\n  <settings pass="specialize">\r\n' +
      '    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="x86" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">\r\n' +
      "      <ComputerName>OLDNAME</ComputerName>\r\n      <TimeZone>UTC</TimeZone>\r\n    </component>\r\n" +
      '    <component name="Microsoft-Windows-Deployment" processorArchitecture="x86" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS" xmlns:w="http://schemas.microsoft.com/WMIConfig/2002/State">\r\n' +
      '      <RunSynchronous>\r\n        <RunSynchronousCommand w:action="add">\r\n          <Order>3</Order>\r\n          <Path>cmd /c site.cmd</Path>\r\n        </RunSynchronousCommand>\r\n      </RunSynchronous>\r\n' +
      "    </component>\r\n  </settings>\r\n</unattend>\r\n";
    const fr = winRoot({ arch: "x86" });
    fs.renameSync(path.join(fr.root, "Windows/Panther"), path.join(fr.root, "Windows/panther"));
    fr.write("/Windows/panther/unattend.xml", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(own, "utf16le")]));
    const ctx = winCtx(fr, { hostname: "db_server_number_two", password: PASSWORD, properties: { USERS: "Administrator ops" } });
    await deploy(ctx);

    expect(fs.existsSync(path.join(fr.root, "unattend.xml"))).toBe(false);
    expect(ctx.warnings).toContain("using the answer file found in the image: C:\\Windows\\panther\\unattend.xml");
    expect(ctx.warnings.some((w) => w.startsWith("computer name db-server-numbe derived from"))).toBe(true);
    const bytes = fs.readFileSync(path.join(fr.root, "Windows/panther/unattend.xml"));
    expect([bytes[0], bytes[1]]).toEqual([0xff, 0xfe]);
    const text = bytes.subarray(2).toString("utf16le");
    expect(text).toContain("<!-- site settings -->");
    expect(text).toContain("<TimeZone>UTC</TimeZone>");
    const doc = parseXml(new Uint8Array(bytes));
    expect(child(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "x86"), "ComputerName")).toBe("db-server-numbe");
    expect(childElements(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "x86")!, "ComputerName")).toHaveLength(1);
    expect(runSync(doc, "x86")).toEqual([
      { order: "3", path: "cmd /c site.cmd", action: undefined },
      { order: "4", path: "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd", action: undefined },
    ]);
    // the existing wcm prefix ("w") is reused
    expect(text).toContain('<RunSynchronousCommand w:action="add">\r\n          <Order>3</Order>');
    expect(text).toMatch(/<RunSynchronousCommand w:action="add">\s*<Description>Change user passwords<\/Description>\s*<Order>4<\/Order>/);
    expect(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "amd64")).toBeUndefined();

    const script = fr.read("/Windows/SnfScripts/ChangeAdminPassword.cmd");
    expect(script).toContain('net user "Administrator" "S3cret-Pw!x%%y"');
    expect(script).toContain('net user "ops" "S3cret-Pw!x%%y"');
    expect(fr.read("/Windows/Setup/Scripts/SetupComplete.cmd")).toContain('if exist "C:\\Windows\\panther\\unattend.xml" del /Q /F "C:\\Windows\\panther\\unattend.xml"');
  });

  test("IGNORE_UNATTEND removes the image's answer files and installs the generated one", async () => {
    const fr = winRoot({ files: { "/Windows/System32/Sysprep/unattend.xml": '<unattend xmlns="urn:schemas-microsoft-com:unattend"/>', "/Windows/Panther/Unattend.xml": "<unattend/>" } });
    const ctx = winCtx(fr, { properties: { IGNORE_UNATTEND: "yes" } });
    await deploy(ctx);
    expect(fs.existsSync(path.join(fr.root, "Windows/System32/Sysprep/unattend.xml"))).toBe(false);
    expect(fs.existsSync(path.join(fr.root, "Windows/Panther/Unattend.xml"))).toBe(false);
    const doc = parseXml(new Uint8Array(fs.readFileSync(path.join(fr.root, "unattend.xml"))));
    expect(child(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "amd64"), "ComputerName")).toBe("win1");
    // no password given: no password script, no command for it
    expect(fs.existsSync(path.join(fr.root, "Windows/SnfScripts/ChangeAdminPassword.cmd"))).toBe(false);
    expect(runSync(doc, "amd64").map((c) => c.path).join()).not.toContain("ChangeAdminPassword");
    expect(ctx.infos).toContain("no password given; passwords left unchanged");
  });

  test("running the tasks twice adds nothing twice", async () => {
    const fr = winRoot({ files: { "/Windows/Setup/Scripts/SetupComplete.cmd": "@echo off\r\ncall C:\\site\\first.cmd\r\n" } });
    await deploy(winCtx(fr, { password: PASSWORD }));
    await deploy(winCtx(fr, { password: PASSWORD, hostname: "win2" }));
    const doc = parseXml(new Uint8Array(fs.readFileSync(path.join(fr.root, "unattend.xml"))));
    expect(child(comp(doc, "specialize", "Microsoft-Windows-Shell-Setup", "amd64"), "ComputerName")).toBe("win2");
    expect(runSync(doc, "amd64").filter((c) => c.path.includes("ChangeAdminPassword"))).toHaveLength(1);
    const sc = fr.read("/Windows/Setup/Scripts/SetupComplete.cmd");
    expect(sc.startsWith("@echo off\r\ncall C:\\site\\first.cmd\r\n")).toBe(true); // the image's own lines stay first
    expect(sc.split("snf-image: first-boot cleanup").length).toBe(2);
  });

  test("refusals: not generalized, pre-Vista, password hash, bad password, bad product key, no answer file", async () => {
    const notGen = winRoot({ state: "[_CLEAN_]\r\nImageState=IMAGE_STATE_COMPLETE\r\n" });
    await expect(installUnattend.run(winCtx(notGen))).rejects.toThrow(/not generalized \(ImageState IMAGE_STATE_COMPLETE\)/);

    const xp = winRoot({ state: null, files: { "/boot.ini": "[boot loader]\r\n", "/ntldr": "" } });
    fs.rmSync(path.join(xp.root, "Windows/Panther"), { recursive: true });
    await expect(installUnattend.run(winCtx(xp))).rejects.toThrow(/older than Windows Vista.*windows-legacy/);

    const noState = winRoot({ state: null });
    const c0 = winCtx(noState);
    await installUnattend.run(c0);
    expect(c0.warnings[0]).toContain("cannot tell whether it was generalized");

    const fr = winRoot();
    await installUnattend.run(winCtx(fr));
    const before = allFiles(fr.root).sort();
    await expect(changePassword.run(winCtx(fr, { passwordHash: "$6$abc$def" }))).rejects.toThrow(/password hash \(img_passwd_hash\) cannot be used for Windows/);
    await expect(changePassword.run(winCtx(fr, { password: 'a"b' }))).rejects.toThrow(/'"'/);
    expect(allFiles(fr.root).sort()).toEqual(before); // nothing written by a refused password
    // A bad product key never reaches the task: the protocol schema refuses it on both sides.
    expect(() => winCtx(winRoot(), { osProductKey: "not-a-key" })).toThrow(/XXXXX-XXXXX/);

    const bare = winRoot();
    await expect(assignHostname.run(winCtx(bare))).rejects.toThrow(/no answer file.*InstallUnattend excluded/);
    await expect(changePassword.run(winCtx(bare, { password: PASSWORD }))).rejects.toThrow(/no answer file/);
    const broken = winRoot({ files: { "/unattend.xml": "<unattend><settings></unattend>" } });
    await expect(installUnattend.run(winCtx(broken))).rejects.toThrow(/C:\\unattend.xml is not well-formed XML: closing tag/);
  });

  test("rename after first boot (answer files gone): a warning, not a failure", async () => {
    const fr = winRoot();
    const ctx = winCtx(fr, { mode: "rename", hostname: "renamed" });
    await assignHostname.run(ctx);
    expect(ctx.warnings[0]).toContain("rename the computer to renamed inside Windows");
    expect(allFiles(fr.root)).toEqual(["Windows/Setup/State/State.ini"]);
  });
});

describe("task table", () => {
  test("InstallUnattend runs after InitializeDatasource, only for windows and windows-legacy, excludable, skipped by CLOUD_INIT", () => {
    const names = TASKS.map((t) => t.name);
    expect(names.indexOf("InstallUnattend")).toBe(names.indexOf("InitializeDatasource") + 1);
    const t = TASKS.find((x) => x.name === "InstallUnattend")!;
    const none = makeProps({});
    expect(skipReason(t, none, "create", "windows")).toBeUndefined();
    expect(skipReason(t, none, "create", "linux")).toBe("not for linux");
    expect(skipReason(t, none, "create", "windows-legacy")).toBeUndefined();
    expect(skipReason(t, none, "create", "freebsd")).toBe("not for freebsd");
    expect(skipReason(t, makeProps({ EXCLUDE_TASK_INSTALLUNATTEND: "yes" }), "create", "windows")).toBe("EXCLUDE_TASK_InstallUnattend");
    expect(skipReason(t, none, "rename", "windows")).toBe("not run on rename");
    for (const n of ["AssignHostname", "ChangePassword"]) expect(skipReason(TASKS.find((x) => x.name === n)!, none, "create", "windows")).toBeUndefined();
  });
});

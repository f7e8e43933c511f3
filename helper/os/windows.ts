/**
 * Windows (NT 6.x+, sysprep-generalized) offline customization through the
 * unattended-setup flow, as the original snf-image does it:
 *
 *  - the answer file Windows will use (the image's own, or one we install as
 *    C:\unattend.xml) gets, in the specialize pass, ComputerName and
 *    ProductKey (Microsoft-Windows-Shell-Setup) and a RunSynchronous command
 *    (Microsoft-Windows-Deployment) that runs
 *    C:\Windows\SnfScripts\ChangeAdminPassword.cmd;
 *  - that script holds `net user <u> <pw> /ACTIVE:YES /EXPIRES:NEVER` lines;
 *  - Windows\Setup\Scripts\SetupComplete.cmd (run once by Windows at the
 *    end of setup, as SYSTEM) overwrites the password script with X's,
 *    deletes it and deletes the answer files (they may hold the product key).
 *
 * NTFS names are case-insensitive for Windows but ntfs-3g looks them up
 * case-sensitively, so every lookup here goes through findCi(). All writes
 * go through lib/safepath.ts.
 */
import * as path from "node:path";
import { existsIn, isDirIn, listDirIn, mkdirIn, readBytesIn, readTextIn, removeIn, statIn, writeFileIn } from "../lib/safepath.ts";
import { ANSWER_FILE_MAX_BYTES } from "../../src/protocol.ts";
import {
  appendElement,
  attr,
  childElements,
  encodeText,
  localName,
  parseXml,
  prefixFor,
  serializeXml,
  setAttr,
  setText,
  textOf,
  XmlError,
  type XDocument,
  type XElement,
} from "../lib/xml.ts";

export type WindowsArch = "amd64" | "x86";

export const UNATTEND_NS = "urn:schemas-microsoft-com:unattend";
export const WCM_NS = "http://schemas.microsoft.com/WMIConfig/2002/State";
export const XSI_NS = "http://www.w3.org/2001/XMLSchema-instance";

/** Where our scripts live (guest path) and how Windows names them. */
export const SNF_SCRIPTS_DIR = "/Windows/SnfScripts";
export const PASSWORD_SCRIPT = `${SNF_SCRIPTS_DIR}/ChangeAdminPassword.cmd`;
export const PASSWORD_SCRIPT_WIN = "C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd";
export const SETUP_COMPLETE = "/Windows/Setup/Scripts/SetupComplete.cmd";
/** Where a generated answer file goes (Windows looks in %SystemDrive% last). */
export const INSTALLED_UNATTEND = "/unattend.xml";
export const STATE_INI = "/Windows/Setup/State/State.ini";

/**
 * Implicit answer-file locations in the order Windows searches them for the
 * passes after generalize (%WINDIR%\Panther\Unattend, %WINDIR%\Panther,
 * %WINDIR%\System32\Sysprep, %SYSTEMDRIVE%); removable media aside.
 */
export const UNATTEND_CANDIDATES = [
  "/Windows/Panther/Unattend/Unattend.xml",
  "/Windows/Panther/Unattend/Autounattend.xml",
  "/Windows/Panther/Unattend.xml",
  "/Windows/Panther/Autounattend.xml",
  "/Windows/System32/Sysprep/Unattend.xml",
  "/Windows/System32/Sysprep/Autounattend.xml",
  "/Unattend.xml",
  "/Autounattend.xml",
] as const;

// ---------------------------------------------------------------------------
// case-insensitive paths

/**
 * The guest path of `guestPath` spelled as it exists in the image (each
 * component matched case-insensitively, an exact match preferred), or
 * undefined if some component is missing.
 */
export function findCi(root: string, guestPath: string): string | undefined {
  let cur = "/";
  for (const c of guestPath.split("/").filter(Boolean)) {
    const names = listDirIn(root, cur);
    const hit = names.includes(c) ? c : names.find((n) => n.toLowerCase() === c.toLowerCase());
    if (hit === undefined) return undefined;
    cur = path.posix.join(cur, hit);
  }
  return cur;
}

/** Like findCi, but the missing tail keeps the spelling given (for creating). */
export function spellCi(root: string, guestPath: string): string {
  const comps = guestPath.split("/").filter(Boolean);
  let cur = "/";
  for (let i = 0; i < comps.length; i++) {
    const next = findCi(root, path.posix.join(cur, comps[i]!));
    if (next === undefined) return path.posix.join(cur, ...comps.slice(i));
    cur = next;
  }
  return cur;
}

/** C:\… form of a guest path on the system drive. */
export function winPath(guestPath: string): string {
  return `C:${guestPath.replace(/\//g, "\\")}`;
}

// ---------------------------------------------------------------------------
// what the image is

/** amd64 when the image has Windows\SysWOW64 (the 32-bit layer of 64-bit Windows), else x86. */
export function windowsArch(root: string): WindowsArch {
  const wow = findCi(root, "/Windows/SysWOW64");
  return wow !== undefined && isDirIn(root, wow) ? "amd64" : "x86";
}

/**
 * Refuse what the unattend flow cannot handle: pre-Vista layouts (NTLDR /
 * boot.ini and no Windows\Panther) and images whose Setup State.ini says
 * they were not generalized. Returns warnings for what it could not check.
 */
export function checkDeployable(root: string): string[] {
  if (isLegacyLayout(root)) throw new Error("the image looks older than Windows Vista (NTLDR/boot.ini, no Windows\\Panther); use OSFAMILY=windows-legacy");
  const ini = findCi(root, STATE_INI);
  const text = ini === undefined ? undefined : readTextIn(root, ini);
  if (text === undefined) return ["the image has no Windows\\Setup\\State\\State.ini: cannot tell whether it was generalized with sysprep"];
  const state = imageState(text.replace(/^\uFEFF/, ""));
  if (state === undefined) return ["Windows\\Setup\\State\\State.ini names no ImageState: cannot tell whether the image was generalized with sysprep"];
  if (!/^IMAGE_STATE_GENERALIZE_RESEAL_TO_(OOBE|AUDIT)$/i.test(state)) throw new Error(`the Windows image is not generalized (ImageState ${state}); run sysprep /generalize /oobe /shutdown before taking the image`);
  return [];
}

/** Windows XP/2003 (NT 5.x): NTLDR or boot.ini at the top and no Windows\Panther. */
export function isLegacyLayout(root: string): boolean {
  return (findCi(root, "/ntldr") !== undefined || findCi(root, "/boot.ini") !== undefined) && findCi(root, "/Windows/Panther") === undefined;
}

/** ImageState from a State.ini text. */
export function imageState(ini: string): string | undefined {
  return /^\s*ImageState\s*=\s*(\S+)\s*$/im.exec(ini)?.[1];
}

// ---------------------------------------------------------------------------
// names and secrets

/**
 * The computer name for an instance: its short name (up to the first dot),
 * with characters outside [A-Za-z0-9-] replaced by '-', cut to 15 bytes,
 * never all digits. `note` says what changed, if anything.
 */
export function computerName(hostname: string): { name: string; note?: string } {
  const short = hostname.trim().split(".")[0] ?? "";
  let name = short.replace(/[^A-Za-z0-9-]/g, "-");
  const changes: string[] = [];
  if (name !== short) changes.push("replaced characters outside A-Z a-z 0-9 - with '-'");
  if (name.length > 15) {
    name = name.slice(0, 15);
    changes.push("cut it to 15 characters");
  }
  const trimmed = name.replace(/^-+|-+$/g, "");
  if (trimmed !== name) {
    name = trimmed;
    changes.push("dropped leading/trailing '-'");
  }
  if (name === "") throw new Error(`instance name ${JSON.stringify(hostname.slice(0, 64))} gives no usable Windows computer name`);
  if (/^\d+$/.test(name)) {
    name = `W${name}`.slice(0, 15);
    changes.push("put a W in front (a computer name cannot be all digits)");
  }
  return changes.length === 0 ? { name } : { name, note: `computer name ${name} derived from instance name ${JSON.stringify(hostname.slice(0, 64))}: ${changes.join(", ")}` };
}

/** A user name `net user` and cmd accept as we write it. */
export function checkWindowsUser(u: string): void {
  if (!/^[A-Za-z0-9._ $-]{1,20}$/.test(u) || /^[ .]|[ .]$/.test(u)) throw new Error(`${JSON.stringify(u.slice(0, 40))} is not a Windows user name we can set a password for (1-20 of A-Z a-z 0-9 . _ - $ space)`);
}

/**
 * The password goes into a cmd script inside double quotes: printable ASCII
 * (the script's code page is not ours to know), no '"', at most 127
 * characters (`net user`'s limit).
 */
export function checkWindowsPassword(pw: string): void {
  if (pw === "") throw new Error("the password is empty");
  if (pw.length > 127) throw new Error("the password is longer than 127 characters (the Windows limit)");
  if (!/^[\x20-\x7e]+$/.test(pw)) throw new Error("the password has characters a Windows password script cannot carry (only printable ASCII is accepted)");
  if (pw.includes('"')) throw new Error("the password contains '\"', which a Windows password script cannot carry");
}

/** Inside "…" cmd still expands %VAR%: double every %. (Delayed expansion is off by default, so ! is literal.) */
const cmdQuoted = (s: string): string => `"${s.replace(/%/g, "%%")}"`;

/** A `net user` script's lines (both Windows kinds): `header` comment, then one line per user; users and password checked. */
export function netUserLines(users: string[], password: string, header: string): string[] {
  checkWindowsPassword(password);
  const lines = ["@echo off", `rem ${header}`];
  for (const u of users) {
    checkWindowsUser(u);
    lines.push(`net user ${cmdQuoted(u)} ${cmdQuoted(password)} /ACTIVE:YES /EXPIRES:NEVER`);
  }
  return lines;
}

/** The ChangeAdminPassword.cmd text (CRLF). */
export function passwordScript(users: string[], password: string): string {
  return `${netUserLines(users, password, "Written by snf-image; SetupComplete.cmd overwrites and deletes this file.").join("\r\n")}\r\n`;
}

// ---------------------------------------------------------------------------
// the answer file

const COMPONENT_ATTRS = (name: string, arch: WindowsArch) => [
  { name: "name", value: name },
  { name: "processorArchitecture", value: arch },
  { name: "publicKeyToken", value: "31bf3856ad364e35" },
  { name: "language", value: "neutral" },
  { name: "versionScope", value: "nonSxS" },
  { name: "xmlns:wcm", value: WCM_NS },
  { name: "xmlns:xsi", value: XSI_NS },
];

function componentXml(name: string, arch: WindowsArch, body: string, ind: string): string {
  const attrs = COMPONENT_ATTRS(name, arch)
    .map((a) => ` ${a.name}="${a.value}"`)
    .join("");
  return `${ind}<component${attrs}>\n${body}${ind}</component>\n`;
}

/**
 * The answer file installed when the image has none (or IGNORE_UNATTEND):
 * both architectures (Windows ignores the other one), ComputerName * until
 * AssignHostname sets it, no local account prompt, EULA page hidden, the
 * WINDOWS_TIMEZONE time zone (oobeSystem, as the original's template).
 */
export function generatedUnattend(timezone = "GMT Standard Time"): string {
  // the protocol allows only these characters: nothing to escape in XML
  if (!/^[A-Za-z0-9 .+()-]{1,64}$/.test(timezone)) throw new Error(`WINDOWS_TIMEZONE ${JSON.stringify(timezone.slice(0, 64))} is not a time zone name`);
  const I = "    ";
  const perArch = (arch: WindowsArch) => ({
    shell: componentXml("Microsoft-Windows-Shell-Setup", arch, `${I.repeat(3)}<ComputerName>*</ComputerName>\n`, I.repeat(2)),
    deploy: componentXml(
      "Microsoft-Windows-Deployment",
      arch,
      [
        `${I.repeat(3)}<RunSynchronous>`,
        `${I.repeat(4)}<RunSynchronousCommand wcm:action="add">`,
        `${I.repeat(5)}<Description>Suppress local user account setup</Description>`,
        `${I.repeat(5)}<Order>1</Order>`,
        `${I.repeat(5)}<Path>cmd /C reg add HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Setup\\OOBE /v UnattendCreatedUser /t REG_DWORD /d 1 /f</Path>`,
        `${I.repeat(4)}</RunSynchronousCommand>`,
        `${I.repeat(3)}</RunSynchronous>`,
        "",
      ].join("\n"),
      I.repeat(2),
    ),
    oobe: componentXml(
      "Microsoft-Windows-Shell-Setup",
      arch,
      [`${I.repeat(3)}<TimeZone>${timezone}</TimeZone>`, `${I.repeat(3)}<OOBE>`, `${I.repeat(4)}<HideEULAPage>true</HideEULAPage>`, `${I.repeat(4)}<ProtectYourPC>1</ProtectYourPC>`, `${I.repeat(4)}<NetworkLocation>Other</NetworkLocation>`, `${I.repeat(3)}</OOBE>`, ""].join(
        "\n",
      ),
      I.repeat(2),
    ),
  });
  const a = perArch("amd64");
  const x = perArch("x86");
  return [
    '<?xml version="1.0" encoding="utf-8"?>\n',
    `<unattend xmlns="${UNATTEND_NS}">\n`,
    `${I}<settings pass="specialize">\n`,
    a.shell,
    x.shell,
    a.deploy,
    x.deploy,
    `${I}</settings>\n`,
    `${I}<settings pass="oobeSystem">\n`,
    a.oobe,
    x.oobe,
    `${I}</settings>\n`,
    "</unattend>\n",
  ].join("");
}

/** The first answer file Windows would pick up, as spelled in the image. */
export function findUnattend(root: string): string | undefined {
  for (const c of UNATTEND_CANDIDATES) {
    const p = findCi(root, c);
    if (p !== undefined && statIn(root, p)?.isFile()) return p;
  }
  return undefined;
}

/** Every answer file in the implicit locations (for IGNORE_UNATTEND). */
export function allUnattends(root: string): string[] {
  const out = new Set<string>();
  for (const c of UNATTEND_CANDIDATES) {
    const p = findCi(root, c);
    if (p !== undefined && statIn(root, p)?.isFile()) out.add(p);
  }
  return [...out];
}

export function parseUnattend(bytes: Uint8Array, where: string): XDocument {
  let doc: XDocument;
  try {
    doc = parseXml(bytes);
  } catch (e) {
    if (e instanceof XmlError) throw new Error(`answer file ${where} is not well-formed XML: ${e.message}`);
    throw e;
  }
  if (localName(doc.root.name) !== "unattend") throw new Error(`answer file ${where} has root <${doc.root.name}>, not <unattend>`);
  return doc;
}

/** Read, edit and write back an answer file inside the image, keeping its encoding. */
export function editUnattend(root: string, guestPath: string, edit: (doc: XDocument) => void): void {
  const bytes = readBytesIn(root, guestPath, ANSWER_FILE_MAX_BYTES);
  if (bytes === undefined) throw new Error(`answer file ${winPath(guestPath)} is not a regular file`);
  const doc = parseUnattend(bytes, winPath(guestPath));
  edit(doc);
  writeFileIn(root, guestPath, encodeText(serializeXml(doc), doc.encoding));
}

/** <settings pass="…">, created at the end of <unattend> when missing. */
function settings(doc: XDocument, pass: string): XElement {
  const hit = childElements(doc.root, "settings").find((s) => attr(s, "pass") === pass);
  return hit ?? appendElement(doc.root, qualified(doc.root, "settings"), [{ name: "pass", value: pass }]);
}

/** An element name in the unattend namespace, with the prefix in scope at `ctx`. */
function qualified(ctx: XElement, local: string): string {
  const p = prefixFor(ctx, UNATTEND_NS);
  return p ? `${p}:${local}` : local;
}

/** The component of this name and architecture in a pass, created when missing. */
export function component(doc: XDocument, pass: string, name: string, arch: WindowsArch): XElement {
  const s = settings(doc, pass);
  const hit = childElements(s, "component").find((c) => attr(c, "name") === name && attr(c, "processorArchitecture") === arch);
  return hit ?? appendElement(s, qualified(s, "component"), COMPONENT_ATTRS(name, arch));
}

/** Set a simple child's text (created when missing; duplicates removed). */
function setChild(parent: XElement, local: string, value: string): void {
  const [first, ...rest] = childElements(parent, local);
  for (const r of rest) removeNode(parent, r);
  if (first) setText(first, value);
  else appendElement(parent, qualified(parent, local), [], value);
}

function removeNode(parent: XElement, el: XElement): void {
  const i = parent.children.indexOf(el);
  if (i < 0) return;
  const prev = parent.children[i - 1];
  const drop = prev?.kind === "text" && /^\s*$/.test(prev.raw) ? 2 : 1;
  parent.children.splice(i - drop + 1, drop);
}

/** specialize / Microsoft-Windows-Shell-Setup / ComputerName. */
export function setComputerName(doc: XDocument, arch: WindowsArch, name: string): void {
  setChild(component(doc, "specialize", "Microsoft-Windows-Shell-Setup", arch), "ComputerName", name);
}

/** specialize / Microsoft-Windows-Shell-Setup / ProductKey. */
export function setProductKey(doc: XDocument, arch: WindowsArch, key: string): void {
  setChild(component(doc, "specialize", "Microsoft-Windows-Shell-Setup", arch), "ProductKey", key);
}

/** Paths of the specialize RunSynchronous commands of this architecture. */
export function runSynchronousPaths(doc: XDocument, arch: WindowsArch): string[] {
  const s = childElements(doc.root, "settings").find((x) => attr(x, "pass") === "specialize");
  if (!s) return [];
  return childElements(s, "component")
    .filter((c) => attr(c, "processorArchitecture") === arch)
    .flatMap((c) => childElements(c, "RunSynchronous"))
    .flatMap((r) => childElements(r, "RunSynchronousCommand"))
    .flatMap((cmd) => childElements(cmd, "Path").map(textOf));
}

/**
 * Make the specialize pass run `cmdPath` (Microsoft-Windows-Deployment
 * RunSynchronous, after every existing command) unless a command already
 * mentions `marker`. Returns true if it added one.
 */
export function ensureRunSynchronous(doc: XDocument, arch: WindowsArch, description: string, cmdPath: string, marker: string): boolean {
  if (runSynchronousPaths(doc, arch).some((p) => p.toLowerCase().includes(marker.toLowerCase()))) return false;
  const comp = component(doc, "specialize", "Microsoft-Windows-Deployment", arch);
  const rs = childElements(comp, "RunSynchronous")[0] ?? appendElement(comp, qualified(comp, "RunSynchronous"));
  const orders = childElements(comp, "RunSynchronous")
    .flatMap((r) => childElements(r, "RunSynchronousCommand"))
    .flatMap((c) => childElements(c, "Order").map((o) => Number(textOf(o).trim())))
    .filter((n) => Number.isInteger(n));
  const order = orders.length ? Math.max(...orders) + 1 : 1;
  let wcm = prefixFor(rs, WCM_NS);
  if (wcm === undefined || wcm === "") {
    setAttr(comp, "xmlns:wcm", WCM_NS);
    wcm = "wcm";
  }
  const cmd = appendElement(rs, qualified(rs, "RunSynchronousCommand"), [{ name: `${wcm}:action`, value: "add" }]);
  appendElement(cmd, qualified(cmd, "Description"), [], description);
  appendElement(cmd, qualified(cmd, "Order"), [], String(order));
  appendElement(cmd, qualified(cmd, "Path"), [], cmdPath);
  return true;
}

// ---------------------------------------------------------------------------
// files in the image

/** Make a directory (case-insensitively reusing what exists); returns its guest path. */
export function ensureDirCi(root: string, guestPath: string): string {
  const p = spellCi(root, guestPath);
  mkdirIn(root, p);
  return p;
}

/** Write the password script; returns its guest path. */
export function writePasswordScript(root: string, users: string[], password: string): string {
  const text = passwordScript(users, password);
  const dir = ensureDirCi(root, SNF_SCRIPTS_DIR);
  const p = `${dir}/ChangeAdminPassword.cmd`;
  writeFileIn(root, p, text, { mode: 0o600 });
  return p;
}

// plain rem lines: no redirection characters
export const BLOCK_BEGIN = "rem === snf-image: first-boot cleanup (generated; do not edit) ===";
export const BLOCK_END = "rem === end of snf-image block ===";

/**
 * Our SetupComplete.cmd block, from the state of the image: overwrite and
 * delete the password script (with at least as many X's as it has bytes),
 * remove SnfScripts, delete the answer files (they may hold the product
 * key; Windows also keeps a copy in Panther).
 */
export function setupCompleteBlock(root: string): string {
  const script = findCi(root, PASSWORD_SCRIPT);
  const size = script === undefined ? 0 : (statIn(root, script)?.size ?? 0);
  const xs = "X".repeat(Math.max(200, size + 2));
  const answerFiles = new Set([...allUnattends(root).map(winPath), "C:\\Windows\\Panther\\unattend.xml"]);
  const lines = [
    BLOCK_BEGIN,
    `if exist "${PASSWORD_SCRIPT_WIN}" (`,
    `  echo ${xs}> "${PASSWORD_SCRIPT_WIN}"`,
    `  del /Q /F "${PASSWORD_SCRIPT_WIN}"`,
    ")",
    'rmdir /Q "C:\\Windows\\SnfScripts"',
    ...[...answerFiles].map((f) => `if exist "${f}" del /Q /F "${f}"`),
    BLOCK_END,
  ];
  return lines.join("\r\n");
}

/**
 * Put a block (delimited by `begin`/`end` rem lines) into SetupComplete.cmd:
 * appended to the image's own script (kept), or replacing the same block
 * from an earlier run. Returns its guest path.
 */
export function setSetupCompleteBlock(root: string, begin: string, end: string, body: string[]): string {
  const dir = ensureDirCi(root, path.posix.dirname(SETUP_COMPLETE));
  const p = `${dir}/${path.posix.basename(findCi(root, SETUP_COMPLETE) ?? SETUP_COMPLETE)}`;
  const old = existsIn(root, p) ? (readTextIn(root, p) ?? "") : "";
  const block = [begin, ...body, end].join("\r\n");
  const start = old.indexOf(begin);
  const stop = old.indexOf(end);
  let text: string;
  if (start >= 0 && stop > start) text = old.slice(0, start) + block + old.slice(stop + end.length);
  else text = old === "" ? `@echo off\r\n${block}\r\n` : `${old}${/\r?\n$/.test(old) ? "" : "\r\n"}${block}\r\n`;
  writeFileIn(root, p, text);
  return p;
}

/** Our first-boot cleanup block in SetupComplete.cmd (see setupCompleteBlock). */
export function updateSetupComplete(root: string): string {
  const lines = setupCompleteBlock(root).split("\r\n");
  return setSetupCompleteBlock(root, BLOCK_BEGIN, BLOCK_END, lines.slice(1, -1));
}

// ---------------------------------------------------------------------------
// Remote Desktop (DisableRemoteDesktopConnections)

/** The SYSTEM hive, and the key/value that turn Remote Desktop off (below the current control set). */
export const SYSTEM_HIVE = "/Windows/System32/config/SYSTEM";
export const TS_KEY = "Control\\Terminal Server";
export const TS_VALUE = "fDenyTSConnections";
export const RDP_BLOCK_BEGIN = "rem === snf-image: restore Remote Desktop (generated; do not edit) ===";
export const RDP_BLOCK_END = "rem === end of snf-image Remote Desktop block ===";

/** The command that puts fDenyTSConnections back to `value` in the running system. */
export function rdpRestoreCommand(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`bad fDenyTSConnections value ${value}`);
  return `reg add "HKLM\\SYSTEM\\CurrentControlSet\\${TS_KEY}" /v ${TS_VALUE} /t REG_DWORD /d ${value} /f`;
}

/** Remove answer files (IGNORE_UNATTEND). Returns the guest paths removed. */
export function removeUnattends(root: string): string[] {
  const all = allUnattends(root);
  for (const p of all) removeIn(root, p);
  return all;
}

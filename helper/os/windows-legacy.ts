/**
 * Windows XP / Server 2003 (OSFAMILY=windows-legacy): sysprep mini-setup
 * reads C:\sysprep\sysprep.inf at first boot and runs the [Commands] of
 * C:\sysprep\i386\$oem$\cmdlines.txt near its end; when mini-setup is done
 * Windows deletes C:\sysprep, answer file and commands included.
 *
 *  - InstallUnattend keeps the image's sysprep.inf (unless IGNORE_UNATTEND or
 *    os_answer_file), else installs a generated one (WINDOWS_TIMEZONE as its
 *    index), sets ProductKey, keeps InstallFilesPath under C:\sysprep\ and
 *    turns OemPreinstall on so cmdlines.txt runs;
 *  - AssignHostname sets [UserData] ComputerName;
 *  - ChangePassword sets [GuiUnattended] AdminPassword (Administrator) and
 *    adds a `net user` script for the other USERS to cmdlines.txt;
 *  - DisableRemoteDesktopConnections adds its restore command there.
 *
 * sysprep.inf and cmdlines.txt are INI text in the ANSI code page: we only
 * write ASCII into them. Every write goes through lib/safepath.ts.
 */
import { readTextIn, statIn, writeFileIn } from "../lib/safepath.ts";
import { checkWindowsPassword, ensureDirCi, findCi, netUserLines, spellCi } from "./windows.ts";

export const SYSPREP_INF = "/sysprep/sysprep.inf";
export const SYSPREP_DIR_WIN = "C:\\sysprep";
export const INSTALL_FILES_PATH = "C:\\sysprep\\i386";
export const OEM_DIR = "/sysprep/i386/$oem$";
export const LEGACY_PASSWORD_SCRIPT = "snfpw.cmd";
export const LEGACY_RDP_SCRIPT = "snfrdp.cmd";
/** Largest sysprep.inf / cmdlines.txt we read from the image. */
const MAX_INI_BYTES = 256 * 1024;

/**
 * sysprep.inf's [GuiUnattended] TimeZone is an index, not a name: Microsoft's
 * "time zone index values" table, by registry key name (the names
 * unattend.xml uses); timezoneIndex() also takes the table's own spellings
 * ("U.S. Mountain", "A.U.S. Eastern", "Fiji Islands"…) as the original's
 * WINDOWS_TIMEZONE did. An unknown name is left out of a generated
 * sysprep.inf with a warning.
 */
export const TIMEZONE_INDEX: Readonly<Record<string, string>> = {
  "Dateline Standard Time": "000",
  "Samoa Standard Time": "001",
  "Hawaiian Standard Time": "002",
  "Alaskan Standard Time": "003",
  "Pacific Standard Time": "004",
  "Mountain Standard Time": "010",
  "Mexico Standard Time 2": "013",
  "US Mountain Standard Time": "015",
  "Central Standard Time": "020",
  "Canada Central Standard Time": "025",
  "Mexico Standard Time": "030",
  "Central America Standard Time": "033",
  "Eastern Standard Time": "035",
  "US Eastern Standard Time": "040",
  "SA Pacific Standard Time": "045",
  "Atlantic Standard Time": "050",
  "SA Western Standard Time": "055",
  "Pacific SA Standard Time": "056",
  "Newfoundland Standard Time": "060",
  "E. South America Standard Time": "065",
  "SA Eastern Standard Time": "070",
  "Greenland Standard Time": "073",
  "Mid-Atlantic Standard Time": "075",
  "Azores Standard Time": "080",
  "Cape Verde Standard Time": "083",
  "GMT Standard Time": "085",
  "Greenwich Standard Time": "090",
  "Central Europe Standard Time": "095",
  "Central European Standard Time": "100",
  "Romance Standard Time": "105",
  "W. Europe Standard Time": "110",
  "W. Central Africa Standard Time": "113",
  "E. Europe Standard Time": "115",
  "Egypt Standard Time": "120",
  "FLE Standard Time": "125",
  "GTB Standard Time": "130",
  "Israel Standard Time": "135",
  "South Africa Standard Time": "140",
  "Russian Standard Time": "145",
  "Arab Standard Time": "150",
  "E. Africa Standard Time": "155",
  "Arabic Standard Time": "158",
  "Iran Standard Time": "160",
  "Arabian Standard Time": "165",
  "Caucasus Standard Time": "170",
  "Afghanistan Standard Time": "175",
  "Ekaterinburg Standard Time": "180",
  "West Asia Standard Time": "185",
  "India Standard Time": "190",
  "Nepal Standard Time": "193",
  "Central Asia Standard Time": "195",
  "Sri Lanka Standard Time": "200",
  "N. Central Asia Standard Time": "201",
  "Myanmar Standard Time": "203",
  "SE Asia Standard Time": "205",
  "North Asia Standard Time": "207",
  "China Standard Time": "210",
  "North Asia East Standard Time": "227",
  "Singapore Standard Time": "215",
  "Taipei Standard Time": "220",
  "W. Australia Standard Time": "225",
  "Korea Standard Time": "230",
  "Tokyo Standard Time": "235",
  "Yakutsk Standard Time": "240",
  "AUS Central Standard Time": "245",
  "Cen. Australia Standard Time": "250",
  "AUS Eastern Standard Time": "255",
  "E. Australia Standard Time": "260",
  "West Pacific Standard Time": "275",
  "Tasmania Standard Time": "265",
  "Vladivostok Standard Time": "270",
  "Central Pacific Standard Time": "280",
  "Fiji Standard Time": "285",
  "New Zealand Standard Time": "290",
  "Tonga Standard Time": "300",
};

const TZ_ALIASES: Readonly<Record<string, string>> = {
  "newfoundland and labrador standard time": "060",
  "transitional islamic state of afghanistan standard time": "175",
  "fiji islands standard time": "285",
};
const tzKey = (name: string): string => name.toLowerCase().replace(/\./g, "").replace(/\s+/g, " ").trim();
const TZ_BY_KEY = new Map<string, string>([...Object.entries(TIMEZONE_INDEX).map(([k, v]) => [tzKey(k), v] as [string, string]), ...Object.entries(TZ_ALIASES)]);

/** The sysprep.inf index of a Windows time zone name, or undefined. */
export function timezoneIndex(name: string): string | undefined {
  return TZ_BY_KEY.get(tzKey(name));
}

/** The generated sysprep.inf (CRLF). `timezoneIndex` undefined: no TimeZone line (mini-setup asks). */
export function generatedSysprepInf(timezoneIndex: string | undefined): string {
  return `${[
    "[Unattended]",
    "OemSkipEula=Yes",
    "OemPreinstall=Yes",
    `InstallFilesPath=${INSTALL_FILES_PATH}`,
    "UnattendMode=FullUnattended",
    "",
    "[GuiUnattended]",
    "AdminPassword=*",
    "OEMSkipRegional=1",
    "OemSkipWelcome=1",
    ...(timezoneIndex === undefined ? [] : [`TimeZone=${timezoneIndex}`]),
    "",
    "[UserData]",
    'FullName="User"',
    'OrgName=""',
    "ComputerName=*",
    "",
    "[Identification]",
    "JoinWorkgroup=WORKGROUP",
    "",
    "[Networking]",
    "InstallDefaultComponents=Yes",
  ].join("\r\n")}\r\n`;
}

// ---------------------------------------------------------------------------
// INI text

/** The value of `key` in `[section]` (case-insensitive), quotes kept; undefined when missing. */
export function iniGet(text: string, section: string, key: string): string | undefined {
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const sec = /^\[([^\]]*)\]/.exec(line);
    if (sec) {
      inSection = sec[1]!.trim().toLowerCase() === section.toLowerCase();
      continue;
    }
    if (!inSection || line.startsWith(";")) continue;
    const eq = line.indexOf("=");
    if (eq > 0 && line.slice(0, eq).trim().toLowerCase() === key.toLowerCase()) return line.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Set `key=value` in `[section]`: the first such line is replaced (later
 * duplicates dropped), else the line is added at the end of the section
 * (the section is added when missing). CRLF out.
 */
export function iniSet(text: string, section: string, key: string, value: string): string {
  if (/[\r\n\0]/.test(value) || /[\r\n\0=[\]]/.test(key)) throw new Error(`cannot write ${key}=… into an INI file`);
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const out: string[] = [];
  let inSection = false;
  let sectionSeen = false;
  let done = false;
  let lastInSection = -1;
  for (const raw of lines) {
    const line = raw.trim();
    const sec = /^\[([^\]]*)\]/.exec(line);
    if (sec) {
      inSection = sec[1]!.trim().toLowerCase() === section.toLowerCase();
      if (inSection) sectionSeen = true;
      out.push(raw);
      if (inSection) lastInSection = out.length - 1;
      continue;
    }
    if (inSection) {
      const eq = line.indexOf("=");
      if (!line.startsWith(";") && eq > 0 && line.slice(0, eq).trim().toLowerCase() === key.toLowerCase()) {
        if (!done) {
          out.push(`${key}=${value}`);
          done = true;
          lastInSection = out.length - 1;
        }
        continue;
      }
      out.push(raw);
      if (line !== "") lastInSection = out.length - 1;
      continue;
    }
    out.push(raw);
  }
  if (!done) {
    if (sectionSeen) out.splice(lastInSection + 1, 0, `${key}=${value}`);
    else out.push(...(out.length && out[out.length - 1]!.trim() !== "" ? [""] : []), `[${section}]`, `${key}=${value}`);
  }
  return `${out.join("\r\n")}\r\n`;
}

// ---------------------------------------------------------------------------
// files in the image

function readIni(root: string, guest: string): string {
  return (readTextIn(root, guest, MAX_INI_BYTES) ?? "").replace(/^\uFEFF/, "");
}

/** The image's sysprep.inf, as spelled in the image, or undefined. */
export function findSysprepInf(root: string): string | undefined {
  const p = findCi(root, SYSPREP_INF);
  return p !== undefined && statIn(root, p)?.isFile() ? p : undefined;
}

/** Edit sysprep.inf (which must exist). */
export function editSysprepInf(root: string, edit: (text: string) => string): string {
  const p = findSysprepInf(root);
  if (p === undefined) throw new Error("the image has no C:\\sysprep\\sysprep.inf (is InstallUnattend excluded?)");
  const text = readIni(root, p);
  writeFileIn(root, p, edit(text));
  return p;
}

/** Install `text` as C:\sysprep\sysprep.inf; returns its guest path. */
export function installSysprepInf(root: string, text: string): string {
  ensureDirCi(root, "/sysprep");
  const p = spellCi(root, SYSPREP_INF);
  writeFileIn(root, p, text);
  return p;
}

/** Keep InstallFilesPath under C:\sysprep\ (where cmdlines.txt is) and turn OemPreinstall on. */
export function fixInstallFilesPath(text: string): string {
  const cur = iniGet(text, "Unattended", "InstallFilesPath")?.replace(/^"|"$/g, "");
  let t = text;
  if (cur === undefined || !cur.toLowerCase().startsWith(`${SYSPREP_DIR_WIN.toLowerCase()}\\`)) t = iniSet(t, "Unattended", "InstallFilesPath", INSTALL_FILES_PATH);
  return iniSet(t, "Unattended", "OemPreinstall", "Yes");
}

/** Where cmdlines.txt lives for this sysprep.inf (its InstallFilesPath\$oem$). */
function cmdlinesPath(root: string): string {
  const inf = findSysprepInf(root);
  const ifp = inf === undefined ? undefined : iniGet(readIni(root, inf), "Unattended", "InstallFilesPath")?.replace(/^"|"$/g, "");
  if (ifp !== undefined && !ifp.toLowerCase().startsWith(`${SYSPREP_DIR_WIN.toLowerCase()}\\`)) throw new Error(`sysprep.inf's InstallFilesPath ${JSON.stringify(ifp.slice(0, 80))} is not under C:\\sysprep`);
  const dir = ifp === undefined ? OEM_DIR : `/${ifp.slice(3).replace(/\\/g, "/")}/$oem$`;
  if (!/^[A-Za-z0-9_/$. -]+$/.test(dir) || dir.split("/").includes("..")) throw new Error(`sysprep.inf's InstallFilesPath ${JSON.stringify(ifp?.slice(0, 80))} is not a plain path`);
  return `${ensureDirCi(root, dir)}/cmdlines.txt`;
}

/** Add a command to cmdlines.txt's [Commands] (once). Returns the guest path. */
export function addCmdLine(root: string, command: string): string {
  if (/[\r\n"\0]/.test(command)) throw new Error("a cmdlines.txt command cannot contain quotes or line breaks");
  const p = spellCi(root, cmdlinesPath(root));
  const text = readIni(root, p);
  const line = `"${command}"`;
  if (text.split(/\r?\n/).some((l) => l.trim().toLowerCase() === line.toLowerCase())) return p;
  let out = text.replace(/\s+$/, "");
  if (!/^\s*\[Commands\]\s*$/im.test(out)) out = `${out}${out ? "\r\n" : ""}[Commands]`;
  // append to the end of the [Commands] section
  const lines = out.split(/\r?\n/);
  const start = lines.findIndex((l) => /^\s*\[Commands\]\s*$/i.test(l));
  let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
  if (end < 0) end = lines.length;
  while (end - 1 > start && lines[end - 1]!.trim() === "") end--;
  lines.splice(end, 0, line);
  writeFileIn(root, p, `${lines.join("\r\n")}\r\n`);
  return p;
}

/**
 * Write `lines` as the script C:\sysprep\i386\$oem$\<name> and make
 * cmdlines.txt run it. Returns the cmdlines.txt guest path.
 */
export function addCmdScript(root: string, name: string, lines: string[], mode = 0o644): string {
  if (!/^[a-z0-9]{1,8}\.cmd$/.test(name)) throw new Error(`bad script name ${name}`);
  writeFileIn(root, `${ensureDirCi(root, OEM_DIR)}/${name}`, `${lines.join("\r\n")}\r\n`, { mode });
  return addCmdLine(root, `cmd /c ${INSTALL_FILES_PATH}\\$oem$\\${name}`);
}

/** AdminPassword value for sysprep.inf (quoted; the same character rules as the password script). */
export function adminPasswordValue(password: string): string {
  checkWindowsPassword(password);
  return `"${password}"`;
}

/** The `net user` script cmdlines.txt runs for USERS other than Administrator (lines). */
export function legacyPasswordScript(users: string[], password: string): string[] {
  return netUserLines(users, password, "Written by snf-image; Windows deletes C:\\sysprep after mini-setup.");
}

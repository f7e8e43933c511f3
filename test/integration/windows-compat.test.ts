/**
 * Issue 11, Windows side, through the real `create` (helper VM under TCG),
 * two boots:
 *   1. windows (NT 6+) ntfsdump with a real SYSTEM hive (built by hivexsh):
 *      os_answer_file served from 127.0.0.1 replaces the image's own answer
 *      file and gets name, key and password step; Remote Desktop is off in
 *      the hive (read back with hivexget) and SetupComplete.cmd restores it;
 *      a personality file lands on NTFS (case-insensitive path); a bash-only
 *      CUSTOM_TASK sees the original's SNF_IMAGE_* environment.
 *   2. windows-legacy (XP layout) diskdump, family detected: a generated
 *      sysprep.inf with ComputerName, ProductKey, AdminPassword, the
 *      WINDOWS_TIMEZONE index, cmdlines.txt, and the hive edit.
 * Plus the host's one-line failure for an os_answer_file that is not there.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, runCreate, type CreateSpec, type ScriptRun } from "../lib/deploy.ts";
import { hivexget, writeSystemHive } from "../lib/hive.ts";
import { withLoop } from "../lib/loop.ts";
import { attr, childElements, parseXml, textOf } from "../../helper/lib/xml.ts";
import { iniGet } from "../../helper/os/windows-legacy.ts";
import { ANSWER_FILE_MAX_BYTES } from "../../src/protocol.ts";

const PASSWORD = "Win-compat-Pw9";
const KEY = "ABCDE-12345-FGHIJ-67890-KLMNO";
const MiB = 1024 * 1024;
const b64 = (s: string) => Buffer.from(s).toString("base64");
const TS = (cs: string) => `\\${cs}\\Control\\Terminal Server`;

const ANSWER = `<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
    <!-- served by the test's http server -->
    <settings pass="oobeSystem">
        <component name="Microsoft-Windows-International-Core" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">
            <UILanguage>el-GR</UILanguage>
        </component>
    </settings>
</unattend>
`;

// bash-only constructs: [[ ]], arrays, ${v^^}, <<<, process substitution
const CUSTOM_TASK = `
set -euo pipefail
[[ -n "\${BASH_VERSION:-}" ]] || exit 3
declare -a parts=()
while IFS= read -r v; do parts+=("$v"); done < <(env | grep -c '^SNF_IMAGE_' )
name=\${SNF_IMAGE_HOSTNAME^^}
read -r first _ <<< "$SNF_IMAGE_DEV $SNF_IMAGE_TYPE"
out="$SNF_IMAGE_TARGET/snf-custom.txt"
{
  echo "name=$name"
  echo "dev=$first type=$SNF_IMAGE_TYPE count=$SNF_IMAGE_DEV_COUNT dev0=$SNF_IMAGE_DEV_0"
  echo "family=$SNF_IMAGE_PROPERTY_OSFAMILY key=\${SNF_IMAGE_OS_PRODUCT_KEY:0:5}"
  echo "resize=$SNF_IMAGE_RESIZE_PART nics=$SNF_IMAGE_NIC_COUNT mac=$SNF_IMAGE_NIC_0_MAC"
  echo "unattend=$(head -c 5 "$SNF_IMAGE_UNATTEND")"
  echo "vars=\${parts[0]}"
  [[ "$SNF_IMAGE_PASSWD" == "${PASSWORD}" ]] && echo "passwd=ok"
} > "$out"
echo "custom task ran with bash $BASH_VERSION"
`;

let work: string;
let imageDir: string;
let server: ReturnType<typeof Bun.serve>;

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

/** A fresh NTFS in `file` (mib MiB), filled by `fill(mountpoint)`. */
function ntfs(file: string, mib: number, fill: (mnt: string) => void): void {
  sh(["truncate", "-s", String(mib * MiB), file]);
  sh(["mkntfs", "-F", "-f", "-q", "-L", "snfwin", file]);
  const mnt = `${file}.mnt`;
  mkdirSync(mnt);
  sh(["ntfs-3g", file, mnt]);
  try {
    fill(mnt);
  } finally {
    sh(["umount", mnt]);
    rmSync(mnt, { recursive: true });
  }
}

function put(mnt: string, p: string, data: string | Buffer): void {
  mkdirSync(join(mnt, p, ".."), { recursive: true });
  writeFileSync(join(mnt, p), data);
}

function hiveFile(name: string, o: Parameters<typeof writeSystemHive>[1]): string {
  const f = join(work, name);
  writeSystemHive(f, o);
  return f;
}

/** Read-only ntfs-3g view of partition 1 of `disk` (case-sensitive, as the bytes are). */
async function withNtfs<T>(disk: string, f: (dir: string) => T): Promise<T> {
  return withLoop(disk, async (d) => {
    const ro = mkdtempSync(join(work, "ro-"));
    sh(["ntfs-3g", "-o", "ro", d.partitions[0]!, ro]);
    try {
      return f(ro);
    } finally {
      sh(["umount", ro]);
      rmSync(ro, { recursive: true, force: true });
    }
  });
}

async function create(spec: CreateSpec): Promise<ScriptRun> {
  const r = await runCreate({ imageDir, ...spec, config: { HELPER_SOFT_TIMEOUT: "600", ...spec.config } });
  if (r.code !== 0) console.log(r.output);
  expect(r.output).not.toContain(PASSWORD);
  expect(r.output).not.toContain(KEY);
  return r;
}

beforeAll(() => {
  expect(existsSync(join(HELPER_DIR, "manifest.json"))).toBe(true);
  work = mkdtempSync(join("/var/tmp", "snf-wincompat-"));
  imageDir = join(work, "images");
  mkdirSync(imageDir);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const p = new URL(req.url).pathname;
      if (p === "/answer.xml") return new Response(ANSWER);
      if (p === "/huge.xml") return new Response(new Uint8Array(ANSWER_FILE_MAX_BYTES + 1).fill(0x20));
      return new Response("no", { status: 404 });
    },
  });
});

afterAll(() => {
  server?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("windows (NT 6+)", () => {
  test("os_answer_file, Remote Desktop off until SetupComplete, personality on NTFS, a bash CUSTOM_TASK", async () => {
    const system = hiveFile("SYSTEM-nt6", { current: 1, deny: 0 });
    ntfs(join(imageDir, "win-nt6"), 48, (m) => {
      mkdirSync(join(m, "Windows/SysWOW64"), { recursive: true });
      mkdirSync(join(m, "Users/Public/Desktop"), { recursive: true });
      put(m, "Windows/System32/config/SYSTEM", readFileSync(system));
      put(m, "Windows/Setup/State/State.ini", "[_CLEAN_]\r\nImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE\r\n");
      put(m, "Windows/Panther/Unattend.xml", '<unattend xmlns="urn:schemas-microsoft-com:unattend"><!-- the image\'s own --></unattend>');
    });
    const disk = join(work, "disk-nt6");
    sh(["truncate", "-s", String(80 * MiB), disk]);
    const r = await create({
      disks: [disk],
      instance: "wincompat1.example.org",
      nics: [{ mac: "aa:00:00:11:22:33" }],
      osp: {
        img_id: "win-nt6",
        img_format: "ntfsdump",
        img_passwd: PASSWORD,
        os_product_key: KEY,
        os_answer_file: `http://127.0.0.1:${server.port}/answer.xml`,
        img_personality: JSON.stringify([{ path: "/users/public/desktop/Hello.txt", contents: b64("hello from snf-image\r\n") }]),
        img_properties: JSON.stringify({ CUSTOM_TASK: b64(CUSTOM_TASK) }),
      },
    });
    expect(r.code).toBe(0);
    console.log(r.output.split("\n").filter((l) => /task (InstallUnattend|DisableRemote|EnforcePers|RunCustom)|os_answer_file|Remote Desktop|custom task|wrote/i.test(l)).join("\n"));
    expect(r.output).toMatch(/os_answer_file http:\/\/127\.0\.0\.1:\d+\/answer\.xml: \d+ bytes/);
    expect(r.output).toContain("custom task ran with bash 5.");

    await withNtfs(disk, (ro) => {
      // the hive, read by hivex
      const hive = join(ro, "Windows/System32/config/SYSTEM");
      expect(hivexget(hive, TS("ControlSet001"), "fDenyTSConnections")).toBe("1");
      expect(hivexget(hive, TS("ControlSet002"), "fDenyTSConnections")).toBe("1"); // was already 1, untouched
      expect(hivexget(hive, TS("ControlSet001"), "AllowRemoteRPC")).toBe("0");
      const sc = readFileSync(join(ro, "Windows/Setup/Scripts/SetupComplete.cmd"), "utf8");
      expect(sc).toContain('\r\nreg add "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server" /v fDenyTSConnections /t REG_DWORD /d 0 /f\r\n');
      expect(sc.indexOf("fDenyTSConnections")).toBeGreaterThan(sc.indexOf("ChangeAdminPassword.cmd")); // after the password step's cleanup

      // the answer file: os_answer_file's content, plus name, key and password step
      expect(existsSync(join(ro, "Windows/Panther/Unattend.xml"))).toBe(false);
      const text = readFileSync(join(ro, "unattend.xml"), "utf8");
      expect(text).toContain("<!-- served by the test's http server -->");
      expect(text).toContain("<UILanguage>el-GR</UILanguage>");
      const doc = parseXml(new Uint8Array(Buffer.from(text)));
      const spec = childElements(doc.root, "settings").find((x) => attr(x, "pass") === "specialize")!;
      const shell = childElements(spec, "component").find((c) => attr(c, "name") === "Microsoft-Windows-Shell-Setup" && attr(c, "processorArchitecture") === "amd64")!;
      expect(textOf(childElements(shell, "ComputerName")[0]!)).toBe("wincompat1");
      expect(textOf(childElements(shell, "ProductKey")[0]!)).toBe(KEY);
      expect(text).toContain("C:\\Windows\\SnfScripts\\ChangeAdminPassword.cmd");

      // personality: into the existing Users/Public/Desktop, not a second "users" tree
      expect(readdirSync(ro).filter((n) => n.toLowerCase() === "users")).toEqual(["Users"]);
      expect(readFileSync(join(ro, "Users/Public/Desktop/Hello.txt"), "utf8")).toBe("hello from snf-image\r\n");

      // the bash custom task and its environment
      const lines = readFileSync(join(ro, "snf-custom.txt"), "utf8").trim().split("\n");
      expect(lines[0]).toBe("name=WINCOMPAT1.EXAMPLE.ORG");
      expect(lines[1]).toMatch(/^dev=\/dev\/sd[a-z] type=ntfsdump count=1 dev0=\/dev\/sd[a-z]$/);
      expect(lines[2]).toBe("family=windows key=ABCDE");
      expect(lines[3]).toBe("resize=1 nics=1 mac=aa:00:00:11:22:33");
      expect(lines[4]).toBe("unattend=<?xml");
      expect(Number(lines[5]!.slice(5))).toBeGreaterThan(20);
      expect(lines[6]).toBe("passwd=ok");
    });
  }, 900_000);
});

describe("windows-legacy (XP/2003)", () => {
  test("detected from the layout; generated sysprep.inf with name, key, password, time zone; hive edited; restore in cmdlines.txt", async () => {
    const system = hiveFile("SYSTEM-xp", { current: 1, deny: 0, sealed: true });
    const fsFile = join(work, "xp.ntfs");
    ntfs(fsFile, 40, (m) => {
      put(m, "ntldr", "not really");
      put(m, "boot.ini", "[boot loader]\r\ntimeout=30\r\n");
      put(m, "WINDOWS/system32/config/system", readFileSync(system));
    });
    // a diskdump: MBR with one type-7 partition at 2048, the NTFS inside
    const img = join(imageDir, "win-xp");
    sh(["truncate", "-s", String(41 * MiB), img]);
    Bun.spawnSync(["sfdisk", "-q", img], { stdin: Buffer.from("label: dos\n2048,,7,*\n") });
    sh(["dd", `if=${fsFile}`, `of=${img}`, "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"]);
    rmSync(fsFile);
    const disk = join(work, "disk-xp");
    sh(["truncate", "-s", String(64 * MiB), disk]);
    const r = await create({
      disks: [disk],
      instance: "xp1",
      config: { WINDOWS_TIMEZONE: "W. Europe Standard Time" },
      osp: { img_id: "win-xp", img_format: "diskdump", img_passwd: PASSWORD, os_product_key: KEY },
    });
    expect(r.code).toBe(0);
    console.log(r.output.split("\n").filter((l) => /family|task (InstallUnattend|AssignHost|ChangePass|DisableRemote)|sysprep|Remote Desktop/i.test(l)).join("\n"));
    expect(r.output).toMatch(/OS family windows-legacy, root partition 1/);
    await withNtfs(disk, (ro) => {
      const inf = readFileSync(join(ro, "sysprep/sysprep.inf"), "utf8");
      expect(iniGet(inf, "UserData", "ComputerName")).toBe("xp1");
      expect(iniGet(inf, "UserData", "ProductKey")).toBe(`"${KEY}"`);
      expect(iniGet(inf, "GuiUnattended", "AdminPassword")).toBe(`"${PASSWORD}"`);
      expect(iniGet(inf, "GuiUnattended", "TimeZone")).toBe("110");
      expect(iniGet(inf, "Unattended", "InstallFilesPath")).toBe("C:\\sysprep\\i386");
      expect(readFileSync(join(ro, "sysprep/i386/$oem$/cmdlines.txt"), "utf8")).toBe('[Commands]\r\n"cmd /c C:\\sysprep\\i386\\$oem$\\snfrdp.cmd"\r\n');
      expect(readFileSync(join(ro, "sysprep/i386/$oem$/snfrdp.cmd"), "utf8")).toContain("fDenyTSConnections /t REG_DWORD /d 0 /f");
      expect(hivexget(join(ro, "WINDOWS/system32/config/system"), TS("ControlSet001"), "fDenyTSConnections")).toBe("1");
    });
  }, 900_000);
});

describe("os_answer_file on the host", () => {
  test.each([
    ["missing.xml", /ERROR: os_answer_file http:\/\/127\.0\.0\.1:\d+\/missing\.xml: HTTP 404 Not Found$/],
    ["huge.xml", /ERROR: os_answer_file http:\/\/127\.0\.0\.1:\d+\/huge\.xml: larger than 1048576 bytes$/],
  ])("%s: one line, before the disk is touched", async (name, re) => {
    const disk = join(work, `disk-${name}`);
    sh(["truncate", "-s", String(64 * MiB), disk]);
    const r = await runCreate({
      imageDir,
      disks: [disk],
      osp: { img_id: "win-nt6", img_format: "ntfsdump", os_answer_file: `http://127.0.0.1:${server.port}/${name}` },
    });
    expect(r.code).toBe(1);
    expect(r.lastLine).toMatch(re);
    expect(readFileSync(disk).every((b) => b === 0)).toBe(true);
  }, 120_000);
});

/**
 * Fake image roots and task contexts for the helper unit tests: a temp
 * directory that looks like a mounted image, and a TaskContext whose run()
 * runs the host's real tools.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PROTOCOL_VERSION, decodeParams, encodeParams, type HelperParamsInput } from "../../src/protocol.ts";
import { makeProps } from "../../helper/props.ts";
import { run } from "../../helper/lib/exec.ts";
import type { OsInfo, TaskContext } from "../../helper/task.ts";

export interface FakeRoot {
  dir: string;
  root: string;
  scratch: string;
  write(p: string, text: string | Buffer, mode?: number): void;
  read(p: string): string;
  cleanup(): void;
}

export const PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nuser:x:1000:1000:User,,,:/home/user:/bin/bash\n";
export const GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nuser:x:1000:\nwww-data:x:33:\n";
export const SHADOW = "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nuser:!:19000:1:90:14:30::\n";

/** A Debian-looking image root in a fresh temp dir (plus a scratch dir outside it). */
export function fakeRoot(files: Record<string, string> = {}): FakeRoot {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-helper-test-"));
  const root = path.join(dir, "root");
  const scratch = path.join(dir, "scratch");
  fs.mkdirSync(root);
  fs.mkdirSync(scratch);
  const write = (p: string, text: string | Buffer, mode = 0o644) => {
    const host = path.join(root, p);
    fs.mkdirSync(path.dirname(host), { recursive: true });
    fs.writeFileSync(host, text);
    fs.chmodSync(host, mode);
  };
  write("/etc/passwd", PASSWD);
  write("/etc/group", GROUP);
  write("/etc/shadow", SHADOW, 0o640);
  fs.chownSync(path.join(root, "etc/shadow"), 0, 42);
  write("/etc/hostname", "debian\n");
  write("/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n::1\tlocalhost ip6-localhost\n");
  write("/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n');
  write("/etc/fstab", "UUID=1234 / ext4 errors=remount-ro 0 1\n");
  fs.mkdirSync(path.join(root, "root"), { mode: 0o700 });
  fs.mkdirSync(path.join(root, "home/user"), { recursive: true, mode: 0o755 });
  fs.chownSync(path.join(root, "home/user"), 1000, 1000);
  for (const [p, t] of Object.entries(files)) write(p, t);
  return {
    dir,
    root,
    scratch,
    write,
    read: (p) => fs.readFileSync(path.join(root, p), "utf8"),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export interface FakeCtx extends TaskContext {
  infos: string[];
  warnings: string[];
}

export function fakeCtx(fr: FakeRoot, p: Partial<HelperParamsInput> = {}, os_: Partial<OsInfo> = {}): FakeCtx {
  const params = decodeParams(
    encodeParams({
      protocol: PROTOCOL_VERSION,
      mode: "create",
      hostname: "vm1.example.org",
      imgFormat: "diskdump",
      properties: {},
      disks: [{ index: 0, serial: "snf-disk0" }],
      now: 1_700_000_000,
      ...p,
    }),
  );
  const infos: string[] = [];
  const warnings: string[] = [];
  const ctx: FakeCtx = {
    params,
    props: makeProps(params.properties, (m) => warnings.push(m)),
    disk: { dev: "/dev/null", sizeBytes: 0, sectorSize: 512, table: "msdos", partitions: [] },
    rootPartition: { number: 1, dev: "/dev/null1", startSector: 2048, sizeSectors: 1, type: "83" },
    os: { family: "linux", distro: "debian", ...os_ },
    root: fr.root,
    scratch: fr.scratch,
    info: (m) => infos.push(m),
    warn: (m) => warnings.push(m),
    run: (cmd, opts) => run(cmd, opts),
    refreshDisk: async () => {},
    infos,
    warnings,
  };
  return ctx;
}

export const modeOf = (p: string): number => fs.statSync(p).mode & 0o7777;

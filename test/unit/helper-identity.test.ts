/** AssignHostname, ChangeMachineId, ChangePassword, passwd & crypt libraries, against fake image roots. */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { assignHostname } from "../../helper/tasks/AssignHostname.ts";
import { changeMachineId, newMachineId } from "../../helper/tasks/ChangeMachineId.ts";
import { changePassword } from "../../helper/tasks/ChangePassword.ts";
import { hashPassword, HASH_METHODS, parseHashMethod, verifyPassword } from "../../helper/lib/crypt.ts";
import { parseGroup, parsePasswd, setShadowHash, shadowHashOf } from "../../helper/lib/passwd.ts";
import { rewriteHosts, validHostname } from "../../helper/os/hostname.ts";
import { detectDistro, parseOsRelease } from "../../helper/os/distro.ts";
import { run } from "../../helper/lib/exec.ts";
import { fakeCtx, fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";

let fr: FakeRoot;
afterEach(() => fr?.cleanup());

describe("AssignHostname", () => {
  test("debian: /etc/hostname, 127.0.1.1 line with fqdn and short name, mailname", () => {
    fr = fakeRoot({ "/etc/mailname": "old.example\n" });
    assignHostname(fakeCtx(fr));
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
    expect(fr.read("/etc/hosts")).toBe("127.0.0.1\tlocalhost\n127.0.1.1\tvm1.example.org\tvm1\n\n::1\tlocalhost ip6-localhost\n");
    expect(fr.read("/etc/mailname")).toBe("vm1.example.org\n");
  });

  test("no mailname is created; a 127.0.1.1 line is added after 127.0.0.1", () => {
    fr = fakeRoot({ "/etc/hosts": "# hosts\n127.0.0.1 localhost\n::1 localhost\n" });
    assignHostname(fakeCtx(fr, { hostname: "plain" }));
    expect(fs.existsSync(path.join(fr.root, "etc/mailname"))).toBe(false);
    expect(fr.read("/etc/hosts")).toBe("# hosts\n127.0.0.1 localhost\n127.0.1.1\tplain\n::1 localhost\n");
  });

  test("redhat without /etc/hostname: sysconfig/network HOSTNAME= replaced", () => {
    fr = fakeRoot({ "/etc/sysconfig/network": "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n" });
    fs.rmSync(path.join(fr.root, "etc/hostname"));
    assignHostname(fakeCtx(fr, {}, { distro: "redhat" }));
    expect(fr.read("/etc/sysconfig/network")).toBe("NETWORKING=yes\nHOSTNAME=vm1.example.org\n");
  });

  test("gentoo conf.d/hostname, suse /etc/HOSTNAME, arch creates /etc/hostname", () => {
    fr = fakeRoot({ "/etc/conf.d/hostname": '# comment\nhostname="localhost"\n' });
    fs.rmSync(path.join(fr.root, "etc/hostname"));
    assignHostname(fakeCtx(fr, {}, { distro: "gentoo" }));
    expect(fr.read("/etc/conf.d/hostname")).toBe('# comment\nhostname="vm1.example.org"\n');
    fr.cleanup();
    fr = fakeRoot();
    fs.rmSync(path.join(fr.root, "etc/hostname"));
    assignHostname(fakeCtx(fr, {}, { distro: "suse" }));
    expect(fr.read("/etc/HOSTNAME")).toBe("vm1.example.org\n");
    fr.cleanup();
    fr = fakeRoot();
    fs.rmSync(path.join(fr.root, "etc/hostname"));
    assignHostname(fakeCtx(fr, {}, { distro: "arch" }));
    expect(fr.read("/etc/hostname")).toBe("vm1.example.org\n");
  });

  test("an invalid hostname is refused before anything is written", () => {
    fr = fakeRoot();
    expect(() => assignHostname(fakeCtx(fr, { hostname: "bad name\nx" }))).toThrow(/not a valid hostname/);
    expect(fr.read("/etc/hostname")).toBe("debian\n");
    expect(validHostname("a-b.c1")).toBe(true);
    expect(validHostname("-ab")).toBe(false);
  });

  test("rewriteHosts collapses several 127.0.1.1 lines", () => {
    expect(rewriteHosts("127.0.1.1 a\n127.0.1.1 b\n", "x")).toBe("127.0.1.1\tx\n");
    expect(rewriteHosts("", "x")).toBe("127.0.1.1\tx\n");
  });
});

describe("distro detection", () => {
  test("os-release ID / ID_LIKE and marker files", () => {
    expect(parseOsRelease('ID="rocky"\nID_LIKE="rhel centos fedora"\n')).toEqual({ ID: "rocky", ID_LIKE: "rhel centos fedora" });
    fr = fakeRoot();
    expect(detectDistro(fr.root)).toBe("debian");
    fr.write("/etc/os-release", 'ID=pop\nID_LIKE="ubuntu debian"\n');
    expect(detectDistro(fr.root)).toBe("debian");
    fr.write("/etc/os-release", "ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\n");
    expect(detectDistro(fr.root)).toBe("suse");
    fs.rmSync(path.join(fr.root, "etc/os-release"));
    fs.mkdirSync(path.join(fr.root, "usr/lib"), { recursive: true });
    fs.writeFileSync(path.join(fr.root, "usr/lib/os-release"), "ID=almalinux\n");
    fs.symlinkSync("../usr/lib/os-release", path.join(fr.root, "etc/os-release"));
    expect(detectDistro(fr.root)).toBe("redhat");
    fs.rmSync(path.join(fr.root, "etc/os-release"));
    fs.rmSync(path.join(fr.root, "usr/lib/os-release"));
    fr.write("/etc/gentoo-release", "Gentoo\n");
    expect(detectDistro(fr.root)).toBe("gentoo");
  });
});

describe("ChangeMachineId", () => {
  test("replaces an existing id in both files with one fresh id", () => {
    const old = "0123456789abcdef0123456789abcdef";
    fr = fakeRoot({ "/etc/machine-id": `${old}\n`, "/var/lib/dbus/machine-id": `${old}\n` });
    changeMachineId(fakeCtx(fr));
    const a = fr.read("/etc/machine-id");
    expect(a).toMatch(/^[0-9a-f]{32}\n$/);
    expect(a).not.toBe(`${old}\n`);
    expect(fr.read("/var/lib/dbus/machine-id")).toBe(a);
    expect(modeOf(path.join(fr.root, "etc/machine-id"))).toBe(0o644);
  });

  test("empty or uninitialized machine-id is left for systemd; dbus symlink untouched", () => {
    fr = fakeRoot({ "/etc/machine-id": "" });
    fs.mkdirSync(path.join(fr.root, "var/lib/dbus"), { recursive: true });
    fs.symlinkSync("/etc/machine-id", path.join(fr.root, "var/lib/dbus/machine-id"));
    const ctx = fakeCtx(fr);
    changeMachineId(ctx);
    expect(fr.read("/etc/machine-id")).toBe("");
    expect(fs.lstatSync(path.join(fr.root, "var/lib/dbus/machine-id")).isSymbolicLink()).toBe(true);
    fr.write("/etc/machine-id", "uninitialized\n");
    changeMachineId(ctx);
    expect(fr.read("/etc/machine-id")).toBe("uninitialized\n");
    expect(ctx.infos.some((m) => m.includes("systemd"))).toBe(true);
  });

  test("ids are random v4-shaped", () => {
    const a = newMachineId();
    expect(a).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(newMachineId()).not.toBe(a);
  });
});

describe("passwd library", () => {
  test("parse passwd/group; skip comments and NIS lines", () => {
    const u = parsePasswd("# c\n+::::::\nroot:x:0:0:root:/root:/bin/sh\nbad:x:y:0::/:/bin/sh\n");
    expect(u).toEqual([{ name: "root", uid: 0, gid: 0, gecos: "root", home: "/root", shell: "/bin/sh" }]);
    expect(parseGroup("adm:x:4:syslog,user\n")).toEqual([{ name: "adm", gid: 4, members: ["syslog", "user"] }]);
  });

  test("setShadowHash replaces only the hash and last-change day", () => {
    const t = "root:*:19000:0:99999:7:::\nuser:!:19000:1:90:14:30::\n";
    const out = setShadowHash(t, "user", "$6$s$h", 20000);
    expect(out).toBe("root:*:19000:0:99999:7:::\nuser:$6$s$h:20000:1:90:14:30::\n");
    expect(() => setShadowHash(t, "nobody", "$6$s$h", 1)).toThrow(/nobody/);
    expect(() => setShadowHash(t, "root", "a:b", 1)).toThrow();
  });
});

describe("crypt", () => {
  test("every method hashes with libxcrypt and verifies", async () => {
    for (const m of HASH_METHODS) {
      const h = await hashPassword("pa ss:wörd", m);
      expect(verifyPassword("pa ss:wörd", h)).toBe(true);
      expect(verifyPassword("other", h)).toBe(false);
    }
    expect(await hashPassword("x", "sha512")).toStartWith("$6$");
    expect(await hashPassword("x", "yescrypt")).toStartWith("$y$");
  });

  test("PASSWD_HASHING_METHOD parsing", () => {
    expect(parseHashMethod(undefined)).toBe("sha512");
    expect(parseHashMethod("SHA-256")).toBe("sha256");
    expect(parseHashMethod("bcrypt")).toBe("blowfish");
    expect(() => parseHashMethod("des")).toThrow(/PASSWD_HASHING_METHOD/);
  });

  test("mkpasswd fallback gets the password on stdin only", async () => {
    const argvs: string[][] = [];
    const recording: typeof run = (cmd, opts) => {
      argvs.push(cmd);
      return run(cmd, opts);
    };
    for (const m of ["sha512", "yescrypt"] as const) {
      const h = await hashPassword("fallback-pw", m, recording, { ffi: false });
      expect(verifyPassword("fallback-pw", h)).toBe(true);
    }
    expect(argvs.map((a) => a[0])).toEqual(["mkpasswd", "mkpasswd"]);
    expect(argvs.flat().join(" ")).not.toContain("fallback-pw");
    await expect(hashPassword("x", "sha512", undefined, { ffi: false })).rejects.toThrow(/mkpasswd/);
  });
});

describe("ChangePassword", () => {
  test("root by default: hash verifies, aging fields kept, last change = params.now, mode kept", async () => {
    fr = fakeRoot();
    await changePassword(fakeCtx(fr, { password: "Secr3t!" }));
    const shadow = fr.read("/etc/shadow");
    const h = shadowHashOf(shadow, "root")!;
    expect(h).toStartWith("$6$");
    expect(verifyPassword("Secr3t!", h)).toBe(true);
    expect(shadow.split("\n")[0]).toBe(`root:${h}:${Math.floor(1_700_000_000 / 86400)}:0:99999:7:::`);
    expect(shadow.split("\n")[1]).toBe("daemon:*:19000:0:99999:7:::");
    expect(modeOf(path.join(fr.root, "etc/shadow"))).toBe(0o640);
    expect(fs.statSync(path.join(fr.root, "etc/shadow")).gid).toBe(42);
    expect(shadow).not.toContain("Secr3t!");
  });

  test("USERS and PASSWD_HASHING_METHOD; salts differ per user", async () => {
    fr = fakeRoot();
    await changePassword(fakeCtx(fr, { password: "pw", properties: { USERS: "root user", PASSWD_HASHING_METHOD: "yescrypt" } }));
    const s = fr.read("/etc/shadow");
    const a = shadowHashOf(s, "root")!;
    const b = shadowHashOf(s, "user")!;
    expect(a).toStartWith("$y$");
    expect(a).not.toBe(b);
    expect(verifyPassword("pw", b)).toBe(true);
    expect(s).toContain(":1:90:14:30::");
  });

  test("a given hash is used verbatim", async () => {
    fr = fakeRoot();
    const hash = await hashPassword("abc", "sha256");
    await changePassword(fakeCtx(fr, { passwordHash: hash }));
    expect(shadowHashOf(fr.read("/etc/shadow"), "root")).toBe(hash);
  });

  test("missing user names the user and changes nothing; no password skips", async () => {
    fr = fakeRoot();
    const before = fr.read("/etc/shadow");
    await expect(changePassword(fakeCtx(fr, { password: "pw", properties: { USERS: "root ghost" } }))).rejects.toThrow(/user ghost does not exist/);
    expect(fr.read("/etc/shadow")).toBe(before);
    fr.write("/etc/passwd", `${fr.read("/etc/passwd")}nosh:x:1001:1001::/home/nosh:/bin/sh\n`);
    await expect(changePassword(fakeCtx(fr, { password: "pw", properties: { USERS: "nosh" } }))).rejects.toThrow(/nosh has no entry in the image's \/etc\/shadow/);
    const ctx = fakeCtx(fr);
    await changePassword(ctx);
    expect(fr.read("/etc/shadow")).toBe(before);
    expect(ctx.infos.join()).toContain("no password");
  });
});

/** AuthorizedKeys, DeleteSSHKeys, EnforcePersonality and the sshd_config reader, against fake image roots. */
import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { authorizedKeys, mergeKeys } from "../../helper/tasks/AuthorizedKeys.ts";
import { deleteSshKeys, planHostKeys } from "../../helper/tasks/DeleteSSHKeys.ts";
import { enforcePersonality } from "../../helper/tasks/EnforcePersonality.ts";
import { authorizedKeysFiles, expandAuthorizedKeysPath, hostKeys, readSshdConfig, splitWords } from "../../helper/os/sshd.ts";
import { run } from "../../helper/lib/exec.ts";
import { fakeCtx, fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";

let fr: FakeRoot;
afterEach(() => fr?.cleanup());

const KEY1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyOne one@example";
const KEY2 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQFakeKeyTwo two@example";

describe("sshd_config reader", () => {
  test("Include expanded in place, first AuthorizedKeysFile wins, Match ends globals", () => {
    fr = fakeRoot({
      "/etc/ssh/sshd_config": "Include /etc/ssh/sshd_config.d/*.conf\nAuthorizedKeysFile .ssh/ignored\nHostKey /etc/ssh/ssh_host_ed25519_key\nMatch User x\n  AuthorizedKeysFile /nope\n",
      "/etc/ssh/sshd_config.d/50-keys.conf": 'AuthorizedKeysFile "/etc/ssh/keys/%u" .ssh/authorized_keys\n',
      "/etc/ssh/sshd_config.d/10-hk.conf": "HostKey=/etc/ssh/ssh_host_rsa_key # comment\n",
      "/etc/ssh/sshd_config.d/README": "AuthorizedKeysFile /wrong\n",
    });
    const d = readSshdConfig(fr.root);
    expect(authorizedKeysFiles(d)).toEqual(["/etc/ssh/keys/%u", ".ssh/authorized_keys"]);
    expect(hostKeys(d)).toEqual(["/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ed25519_key"]);
    expect(authorizedKeysFiles([])).toEqual([".ssh/authorized_keys", ".ssh/authorized_keys2"]);
    expect(splitWords('a "b c"  d')).toEqual(["a", "b c", "d"]);
    const u = { name: "bob", home: "/home/bob", uid: 7 };
    expect(expandAuthorizedKeysPath("%h/.ssh/k_%u_%%", u)).toBe("/home/bob/.ssh/k_bob_%");
    expect(expandAuthorizedKeysPath(".ssh/authorized_keys", u)).toBe("/home/bob/.ssh/authorized_keys");
  });
});

describe("AuthorizedKeys", () => {
  test("default path: .ssh 0700 and file 0600 owned by the user, appended without duplicates", () => {
    fr = fakeRoot();
    fr.write("/home/user/.ssh/authorized_keys", `${KEY1}\n`, 0o644);
    const ctx = fakeCtx(fr, { authKeys: `${KEY1}\n\n# comment\n${KEY2}\n`, properties: { USERS: "root user" } });
    authorizedKeys(ctx);
    authorizedKeys(ctx); // idempotent
    expect(fr.read("/root/.ssh/authorized_keys")).toBe(`${KEY1}\n${KEY2}\n`);
    expect(fr.read("/home/user/.ssh/authorized_keys")).toBe(`${KEY1}\n${KEY2}\n`);
    const dir = fs.statSync(path.join(fr.root, "home/user/.ssh"));
    const file = fs.statSync(path.join(fr.root, "home/user/.ssh/authorized_keys"));
    expect([dir.mode & 0o7777, dir.uid, dir.gid]).toEqual([0o700, 1000, 1000]);
    expect([file.mode & 0o7777, file.uid, file.gid]).toEqual([0o600, 1000, 1000]);
    expect(modeOf(path.join(fr.root, "root/.ssh"))).toBe(0o700);
  });

  test("AuthorizedKeysFile outside the home, with %u", () => {
    fr = fakeRoot({ "/etc/ssh/sshd_config": "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n" });
    authorizedKeys(fakeCtx(fr, { authKeys: KEY1, properties: { USERS: "user" } }));
    const f = path.join(fr.root, "etc/ssh/authorized_keys/user");
    expect(fs.readFileSync(f, "utf8")).toBe(`${KEY1}\n`);
    expect(fs.statSync(f).uid).toBe(1000);
    expect(modeOf(path.join(fr.root, "etc/ssh/authorized_keys"))).toBe(0o755);
  });

  test("none → warning, nothing written; unknown user → error; no keys → nothing", () => {
    fr = fakeRoot({ "/etc/ssh/sshd_config": "AuthorizedKeysFile none\n" });
    const ctx = fakeCtx(fr, { authKeys: KEY1 });
    authorizedKeys(ctx);
    expect(ctx.warnings.join()).toContain("none");
    expect(fs.existsSync(path.join(fr.root, "root/.ssh"))).toBe(false);
    fr.write("/etc/ssh/sshd_config", "");
    expect(() => authorizedKeys(fakeCtx(fr, { authKeys: KEY1, properties: { USERS: "ghost" } }))).toThrow(/user ghost does not exist/);
    authorizedKeys(fakeCtx(fr));
    expect(fs.existsSync(path.join(fr.root, "root/.ssh"))).toBe(false);
  });

  test("a .ssh symlink to the host's /etc cannot leak out of the image", () => {
    fr = fakeRoot();
    fs.symlinkSync("/etc", path.join(fr.root, "root/.ssh"));
    authorizedKeys(fakeCtx(fr, { authKeys: KEY1 }));
    expect(fr.read("/etc/authorized_keys")).toBe(`${KEY1}\n`);
    expect(fs.existsSync("/etc/authorized_keys")).toBe(false);
  });

  test("mergeKeys", () => {
    expect(mergeKeys("a", ["a", "b", "b"])).toBe("a\nb\n");
    expect(mergeKeys("", [])).toBe("");
  });
});

describe("DeleteSSHKeys", () => {
  test("planHostKeys: property, HostKey lines, default", () => {
    const w: string[] = [];
    expect(planHostKeys([], undefined, (m) => w.push(m)).map((k) => k.type)).toEqual(["ed25519", "ecdsa", "rsa"]);
    expect(planHostKeys(["/etc/ssh/ssh_host_rsa_key", "/srv/custom"], undefined, (m) => w.push(m))).toEqual([{ type: "rsa", path: "/etc/ssh/ssh_host_rsa_key" }]);
    expect(w.join()).toContain("/srv/custom");
    expect(planHostKeys(["/k/ssh_host_ed25519_key"], "ed25519, rsa", () => {})).toEqual([
      { type: "ed25519", path: "/k/ssh_host_ed25519_key" },
      { type: "rsa", path: "/etc/ssh/ssh_host_rsa_key" },
    ]);
    expect(() => planHostKeys([], "dsa", () => {})).toThrow(/SSH_HOST_KEY_TYPES/);
  });

  test("old keys removed, fresh keys of the configured types with right modes and comment", async () => {
    fr = fakeRoot({
      "/etc/ssh/sshd_config": "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/keys/ssh_host_ecdsa_key\n",
      "/etc/ssh/ssh_host_dsa_key": "OLD",
      "/etc/ssh/ssh_host_dsa_key.pub": "OLD",
      "/etc/ssh/ssh_host_ed25519_key": "OLD",
      "/etc/ssh/keys/ssh_host_ecdsa_key": "OLD",
    });
    const ctx = fakeCtx(fr);
    await deleteSshKeys(ctx);
    const names = fs.readdirSync(path.join(fr.root, "etc/ssh")).sort();
    expect(names).toEqual(["keys", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "sshd_config"]);
    for (const k of ["etc/ssh/ssh_host_ed25519_key", "etc/ssh/keys/ssh_host_ecdsa_key"]) {
      const priv = path.join(fr.root, k);
      expect(fs.readFileSync(priv, "utf8")).toStartWith("-----BEGIN OPENSSH PRIVATE KEY-----");
      expect(modeOf(priv)).toBe(0o600);
      expect(modeOf(`${priv}.pub`)).toBe(0o644);
      expect(fs.readFileSync(`${priv}.pub`, "utf8").trim()).toEndWith("root@vm1.example.org");
      // the public key really belongs to the private key
      const derived = await run(["ssh-keygen", "-y", "-f", priv]);
      expect(fs.readFileSync(`${priv}.pub`, "utf8")).toStartWith(derived.stdout.trim());
    }
    expect(ctx.infos.join("\n")).not.toContain("PRIVATE KEY");
    expect(fs.readdirSync(fr.scratch)).toEqual([]);
  });

  test("no /etc/ssh → nothing to do", async () => {
    fr = fakeRoot();
    const ctx = fakeCtx(fr);
    await deleteSshKeys(ctx);
    expect(fs.existsSync(path.join(fr.root, "etc/ssh"))).toBe(false);
  });

  test("default: ed25519, ecdsa and rsa (measures the native cost)", async () => {
    fr = fakeRoot({ "/etc/ssh/sshd_config": "", "/etc/ssh/ssh_host_rsa_key": "OLD" });
    const t0 = performance.now();
    await deleteSshKeys(fakeCtx(fr));
    const ms = performance.now() - t0;
    console.log(`DeleteSSHKeys (ed25519+ecdsa+rsa3072), native: ${ms.toFixed(0)} ms`);
    for (const t of ["ed25519", "ecdsa", "rsa"]) expect(fs.existsSync(path.join(fr.root, `etc/ssh/ssh_host_${t}_key.pub`))).toBe(true);
    expect(fr.read("/etc/ssh/ssh_host_rsa_key")).not.toBe("OLD");
  });
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("EnforcePersonality", () => {
  test("writes files with owner/group by name, mode, parent dirs 0750, backups of existing files", () => {
    fr = fakeRoot({ "/etc/motd": "old motd\n" });
    const ctx = fakeCtx(fr, {
      personality: [
        { path: "/etc/motd", contents: b64("new motd\n"), owner: "root", group: "root", mode: 0o644 },
        { path: "/srv/app/conf/app.ini", contents: b64("[x]\n"), owner: "user", group: "www-data", mode: 0o640 },
        { path: "/opt/default", contents: b64("d") },
      ],
    });
    enforcePersonality(ctx);
    expect(fr.read("/etc/motd")).toBe("new motd\n");
    expect(fr.read("/etc/motd.bak.1700000000")).toBe("old motd\n");
    const app = fs.statSync(path.join(fr.root, "srv/app/conf/app.ini"));
    expect([app.mode & 0o7777, app.uid, app.gid]).toEqual([0o640, 1000, 33]);
    expect(modeOf(path.join(fr.root, "srv/app"))).toBe(0o750);
    const d = fs.statSync(path.join(fr.root, "opt/default"));
    expect([d.mode & 0o7777, d.uid, d.gid]).toEqual([0o440, 0, 0]);
  });

  test("unknown owner or group names the cause; numeric ids are accepted", () => {
    fr = fakeRoot();
    expect(() => enforcePersonality(fakeCtx(fr, { personality: [{ path: "/a", contents: "", owner: "ghost" }] }))).toThrow(/owner ghost does not exist/);
    expect(() => enforcePersonality(fakeCtx(fr, { personality: [{ path: "/a", contents: "", group: "ghosts" }] }))).toThrow(/group ghosts does not exist/);
    enforcePersonality(fakeCtx(fr, { personality: [{ path: "/n", contents: b64("x"), owner: "4242", group: "4343" }] }));
    expect(fs.statSync(path.join(fr.root, "n")).uid).toBe(4242);
    expect(() => enforcePersonality(fakeCtx(fr, { personality: [{ path: "/b", contents: "!!notbase64" }] }))).toThrow(/not base64/);
    expect(() => enforcePersonality(fakeCtx(fr, { personality: [{ path: "/etc", contents: "" }] }))).toThrow(/directory/);
  });

  test("symlinked directories and files in the image cannot lead outside it", () => {
    fr = fakeRoot();
    const outsideDir = path.join(fr.dir, "host");
    fs.mkdirSync(outsideDir);
    fs.writeFileSync(path.join(outsideDir, "victim"), "host file\n");
    fs.symlinkSync(outsideDir, path.join(fr.root, "evil"));
    fs.symlinkSync(path.join(outsideDir, "victim"), path.join(fr.root, "etc/victim"));
    enforcePersonality(
      fakeCtx(fr, {
        personality: [
          { path: "/evil/victim", contents: b64("pwned") },
          { path: "/etc/victim", contents: b64("pwned") },
        ],
      }),
    );
    expect(fs.readFileSync(path.join(outsideDir, "victim"), "utf8")).toBe("host file\n");
    expect(fr.read(path.join(outsideDir, "victim"))).toBe("pwned");
    // the symlink itself was moved aside, the new file is a regular file
    expect(fs.lstatSync(path.join(fr.root, "etc/victim")).isFile()).toBe(true);
    expect(fs.lstatSync(path.join(fr.root, "etc/victim.bak.1700000000")).isSymbolicLink()).toBe(true);
  });
});

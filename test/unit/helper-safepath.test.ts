import { afterEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { existsIn, mkdirIn, readTextIn, removeIn, resolveInRoot, UnsafePathError, writeFileIn } from "../../helper/lib/safepath.ts";
import { fakeRoot, modeOf, type FakeRoot } from "./helper-fixtures.ts";

let fr: FakeRoot;
afterEach(() => fr?.cleanup());

describe("resolveInRoot", () => {
  test("plain paths and .. clamped at the root", () => {
    fr = fakeRoot();
    expect(resolveInRoot(fr.root, "/etc/passwd")).toBe(path.join(fr.root, "etc/passwd"));
    expect(resolveInRoot(fr.root, "/../../../etc/shadow")).toBe(path.join(fr.root, "etc/shadow"));
    expect(resolveInRoot(fr.root, "etc/./x/../hosts")).toBe(path.join(fr.root, "etc/hosts"));
    expect(resolveInRoot(fr.root, "/")).toBe(fr.root);
  });

  test("absolute symlinks are re-rooted at the image root", () => {
    fr = fakeRoot();
    fs.symlinkSync("/", path.join(fr.root, "escape"));
    fs.symlinkSync("/etc", path.join(fr.root, "root/.ssh"));
    expect(resolveInRoot(fr.root, "/escape/etc/passwd")).toBe(path.join(fr.root, "etc/passwd"));
    expect(resolveInRoot(fr.root, "/root/.ssh/authorized_keys")).toBe(path.join(fr.root, "etc/authorized_keys"));
  });

  test("relative symlinks full of .. cannot climb out", () => {
    fr = fakeRoot();
    fs.symlinkSync("../../../../../../tmp", path.join(fr.root, "etc/evil"));
    expect(resolveInRoot(fr.root, "/etc/evil/x")).toBe(path.join(fr.root, "tmp/x"));
    fs.mkdirSync(path.join(fr.root, "a/b"), { recursive: true });
    fs.symlinkSync("../../..", path.join(fr.root, "a/b/up"));
    expect(resolveInRoot(fr.root, "/a/b/up/etc")).toBe(path.join(fr.root, "etc"));
    expect(resolveInRoot(fr.root, "/a/b/up/../../etc/hosts")).toBe(path.join(fr.root, "etc/hosts"));
  });

  test("chains of symlinks, dangling final symlink, loops", () => {
    fr = fakeRoot();
    fs.symlinkSync("l2", path.join(fr.root, "etc/l1"));
    fs.symlinkSync("/etc/hosts", path.join(fr.root, "etc/l2"));
    expect(resolveInRoot(fr.root, "/etc/l1")).toBe(path.join(fr.root, "etc/hosts"));
    expect(resolveInRoot(fr.root, "/etc/l1", { followLast: false })).toBe(path.join(fr.root, "etc/l1"));
    fs.symlinkSync("/nonexistent/dir/file", path.join(fr.root, "etc/dangling"));
    expect(resolveInRoot(fr.root, "/etc/dangling")).toBe(path.join(fr.root, "nonexistent/dir/file"));
    fs.symlinkSync("loop2", path.join(fr.root, "loop1"));
    fs.symlinkSync("loop1", path.join(fr.root, "loop2"));
    expect(() => resolveInRoot(fr.root, "/loop1/x")).toThrow(UnsafePathError);
  });
});

describe("file operations", () => {
  test("writeFileIn through a hostile symlink stays inside the image", () => {
    fr = fakeRoot();
    // fr.dir exists on the host, but not inside the image
    const outside = path.join(fr.dir, "outside.txt");
    fs.symlinkSync(outside, path.join(fr.root, "etc/motd"));
    expect(() => writeFileIn(fr.root, "/etc/motd", "hello\n")).toThrow(/ENOENT/);
    expect(fs.existsSync(outside)).toBe(false);
    // a symlinked directory pointing at the host's real /etc
    fs.symlinkSync(fr.dir, path.join(fr.root, "etc/evil"));
    fs.mkdirSync(path.join(fr.root, fr.dir), { recursive: true });
    writeFileIn(fr.root, "/etc/evil/outside.txt", "hello\n");
    expect(fs.existsSync(outside)).toBe(false);
    expect(fs.readFileSync(path.join(fr.root, outside), "utf8")).toBe("hello\n");
  });

  test("writeFileIn keeps owner and mode of a replaced file, unless told otherwise", () => {
    fr = fakeRoot();
    const shadow = path.join(fr.root, "etc/shadow");
    writeFileIn(fr.root, "/etc/shadow", "x\n");
    expect(modeOf(shadow)).toBe(0o640);
    expect(fs.statSync(shadow).gid).toBe(42);
    writeFileIn(fr.root, "/etc/new", "n", { mode: 0o600, uid: 1000, gid: 1000 });
    const st = fs.statSync(path.join(fr.root, "etc/new"));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o600, 1000, 1000]);
    expect(modeOf(path.join(fr.root, "etc/hostname"))).toBe(0o644);
    // no temp files left behind
    expect(fs.readdirSync(path.join(fr.root, "etc")).filter((n) => n.includes("snf-tmp"))).toEqual([]);
  });

  test("writeFileIn refuses to replace a directory", () => {
    fr = fakeRoot();
    expect(() => writeFileIn(fr.root, "/etc", "x")).toThrow(/not a regular file/);
  });

  test("mkdirIn creates missing parents with the given mode and owner, follows symlinked dirs", () => {
    fr = fakeRoot();
    mkdirIn(fr.root, "/srv/a/b", { mode: 0o750, uid: 1000, gid: 1000 });
    const st = fs.statSync(path.join(fr.root, "srv/a/b"));
    expect([st.mode & 0o7777, st.uid]).toEqual([0o750, 1000]);
    fs.symlinkSync("/", path.join(fr.root, "up"));
    mkdirIn(fr.root, "/up/opt/x");
    expect(fs.statSync(path.join(fr.root, "opt/x")).isDirectory()).toBe(true);
    expect(() => mkdirIn(fr.root, "/etc/passwd/x")).toThrow(/not a directory/);
  });

  test("removeIn unlinks a symlink, never its target; readTextIn/existsIn", () => {
    fr = fakeRoot();
    fs.symlinkSync("/etc/passwd", path.join(fr.root, "etc/link"));
    expect(removeIn(fr.root, "/etc/link")).toBe(true);
    expect(fs.existsSync(path.join(fr.root, "etc/passwd"))).toBe(true);
    expect(removeIn(fr.root, "/etc/link")).toBe(false);
    expect(readTextIn(fr.root, "/etc/hostname")).toBe("debian\n");
    expect(readTextIn(fr.root, "/etc")).toBeUndefined();
    expect(readTextIn(fr.root, "/nope")).toBeUndefined();
    expect(existsIn(fr.root, "/etc/hosts")).toBe(true);
  });
});

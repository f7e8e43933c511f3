/**
 * Image metadata (NAME.meta in snf-image-creator's format: {"properties":
 * {...}, "disk-format": "diskdump"}): parsed and bounded, attached to the
 * local source, listed by the doctor; bad ones fail with one line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseImageMeta, META_MAX_BYTES } from "../../src/image/meta.ts";
import { resolveLocal } from "../../src/image/sources/local.ts";
import { checkImageDir } from "../../src/doctor/images.ts";
import { mergeProperties } from "../../src/customize.ts";
import { SnfError } from "../../src/errors.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-meta-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** What snf-image-creator writes (main.py: json.dumps({'properties': …, 'disk-format': 'diskdump'})). */
const CREATOR = JSON.stringify({
  properties: { OSFAMILY: "linux", ROOT_PARTITION: "1", USERS: "root user", DESCRIPTION: "Debian 12 — base", SORTORDER: "1", EXCLUDE_TASK_SELINUXAUTORELABEL: "yes" },
  "disk-format": "diskdump",
});

function oneLine(f: () => unknown): string {
  let e: unknown;
  try {
    f();
  } catch (x) {
    e = x;
  }
  expect(e).toBeInstanceOf(SnfError);
  const m = (e as Error).message;
  expect(m).not.toContain("\n");
  return m;
}

describe("parseImageMeta", () => {
  test("snf-image-creator's file: its properties, names upper-cased, values strings", () => {
    expect(parseImageMeta(CREATOR, "x.meta")).toEqual({
      OSFAMILY: "linux",
      ROOT_PARTITION: "1",
      USERS: "root user",
      DESCRIPTION: "Debian 12 — base",
      SORTORDER: "1",
      EXCLUDE_TASK_SELINUXAUTORELABEL: "yes",
    });
    expect(parseImageMeta('{"properties": {"root_partition": 2, "gui": true}}', "x.meta")).toEqual({ ROOT_PARTITION: "2", GUI: "true" });
  });
  test("bad ones: one line naming the file and what is wrong", () => {
    expect(oneLine(() => parseImageMeta("{", "a.meta"))).toBe("image metadata a.meta is not valid JSON");
    expect(oneLine(() => parseImageMeta("[]", "a.meta"))).toMatch(/^image metadata a.meta: .*expected \{"properties"/);
    expect(oneLine(() => parseImageMeta('{"OSFAMILY": "linux"}', "a.meta"))).toMatch(/^image metadata a.meta: .*properties/);
    expect(oneLine(() => parseImageMeta('{"properties": {"a b": "x"}}', "a.meta"))).toMatch(/property name "a b" is not a valid name/);
    expect(oneLine(() => parseImageMeta('{"properties": {"X": {"y": 1}}}', "a.meta"))).toMatch(/property X must be a string/);
    expect(oneLine(() => parseImageMeta('{"properties": {}, "disk-format": 3}', "a.meta"))).toMatch(/disk-format/);
  });
});

describe("local images", () => {
  test("NAME.meta next to the image gives default properties; the image name of a legacy file keeps its own .meta", async () => {
    fs.writeFileSync(path.join(dir, "deb"), new Uint8Array(4096));
    fs.writeFileSync(path.join(dir, "deb.meta"), CREATOR);
    const src = await resolveLocal("deb", { imageDir: dir, format: "diskdump" });
    expect(src.properties?.OSFAMILY).toBe("linux");
    expect(src.propertiesFrom).toBe("deb.meta");
    (await src.open()).cancel();
    fs.writeFileSync(path.join(dir, "old.diskdump"), new Uint8Array(4096));
    fs.writeFileSync(path.join(dir, "old.diskdump.meta"), '{"properties": {"USERS": "admin"}}');
    const old = await resolveLocal("old", { imageDir: dir, format: "diskdump" });
    expect(old.properties).toEqual({ USERS: "admin" });
    (await old.open()).cancel();
    fs.writeFileSync(path.join(dir, "plain"), new Uint8Array(4096));
    const plain = await resolveLocal("plain", { imageDir: dir, format: "diskdump" });
    expect(plain.properties).toBeUndefined();
    (await plain.open()).cancel();
  });
  test("precedence: metadata < host-set < img_properties < inst_properties", () => {
    const meta = { OSFAMILY: "linux", USERS: "root", ROOT_PARTITION: "2", SWAP: "2:512" };
    const merged = mergeProperties({ ...meta, ROOT_PARTITION: "1" }, { imgProperties: { USERS: "admin", SWAP: "" }, instProperties: { USERS: "ops" } });
    expect(merged).toEqual({ OSFAMILY: "linux", ROOT_PARTITION: "1", USERS: "ops", SWAP: "" });
  });
  test("a bad, huge, symlinked or non-file .meta fails the image with one line", async () => {
    const bad: [string, () => void, RegExp][] = [
      ["badjson", () => fs.writeFileSync(path.join(dir, "badjson.meta"), "{oops"), /image metadata badjson.meta is not valid JSON/],
      ["huge", () => fs.writeFileSync(path.join(dir, "huge.meta"), " ".repeat(META_MAX_BYTES + 1)), /larger than 65536 bytes/],
      ["link", () => fs.symlinkSync("/etc/passwd", path.join(dir, "link.meta")), /link.meta cannot be opened \(a symlink\)/],
      ["isdir", () => fs.mkdirSync(path.join(dir, "isdir.meta")), /isdir.meta is not a regular file/],
    ];
    for (const [name, make, re] of bad) {
      fs.writeFileSync(path.join(dir, name), new Uint8Array(4096));
      make();
      const e = await resolveLocal(name, { imageDir: dir, format: "diskdump" }).catch((e) => e);
      expect(e).toBeInstanceOf(SnfError);
      expect(e.message).toMatch(re);
      expect(e.message).not.toContain("\n");
    }
    for (const name of ["badjson", "huge", "link", "isdir"]) fs.rmSync(path.join(dir, `${name}.meta`), { recursive: true });
  });
});

describe("doctor", () => {
  test("lists images with their metadata, not the .meta/.md5sum files; a bad .meta fails the check", async () => {
    const d = fs.mkdtempSync(path.join(dir, "doc-"));
    fs.writeFileSync(path.join(d, "deb.qcow2"), new Uint8Array([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
    fs.writeFileSync(path.join(d, "deb.qcow2.meta"), CREATOR);
    fs.writeFileSync(path.join(d, "deb.qcow2.md5sum"), "x deb.qcow2\n");
    fs.writeFileSync(path.join(d, "raw"), new Uint8Array(10));
    const c = await checkImageDir(d);
    expect(c.status).toBe("ok");
    expect(c.images?.map((i) => i.name)).toEqual(["deb.qcow2", "raw"]);
    expect(c.images?.[0]).toMatchObject({ format: "qcow2", properties: { OSFAMILY: "linux", ROOT_PARTITION: "1" } });
    expect(c.details?.[0]).toMatch(/^deb.qcow2: qcow2, uncompressed, 8 B; metadata: OSFAMILY=linux .*DESCRIPTION="Debian 12 — base"/);
    fs.writeFileSync(path.join(d, "raw.meta"), '{"properties": []}');
    const bad = await checkImageDir(d);
    expect(bad.status).toBe("fail");
    expect(bad.finding).toMatch(/^image metadata raw.meta: /);
    expect(bad.details?.[1]).toMatch(/^raw: .*BAD METADATA: image metadata raw.meta/);
  });
});

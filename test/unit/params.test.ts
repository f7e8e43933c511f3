import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfig } from "../../src/config.ts";
import { applyConfigDocument, checkParams, mergeParams, resolveParams, type RawParams } from "../../src/params.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host";
const base: RawParams = { img_id: "debian", img_format: "diskdump" };
const problems = (p: RawParams, forVerify = false) => checkParams({ ...base, ...p }, { forVerify }).problems;

describe("OS parameters: good values", () => {
  test.each<[string, RawParams]>([
    ["minimal", {}],
    ["password", { img_passwd: "s3cret" }],
    ["empty password is defined", { img_passwd: "" }],
    ["sha512 hash", { img_passwd_hash: "$6$saltsalt$7wvqGVVpO6NFF4P9.oM8x3xRDXz0lkqRbdKK6w1x5Sg6hXSJ0x8Z3K1Gm7ZyM0JTWv7fqh0KydiF/Kt9oI.Dn/" }],
    ["yescrypt hash", { img_passwd_hash: "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7" }],
    ["properties", { img_properties: '{"OSFAMILY":"linux","root_partition":1,"swap":"2:512","X":true}' }],
    ["inst_properties", { inst_properties: '{"USERS":"root user"}' }],
    ["personality", { img_personality: JSON.stringify([{ path: "/root/a", contents: b64("x"), owner: "root", group: "root", mode: 384 }]) }],
    ["personality defaults", { img_personality: JSON.stringify([{ path: "/etc/motd", contents: b64("hi") }]) }],
    ["auth keys", { auth_keys: `${KEY}\n# comment\n\nfrom="10.0.0.1" ${KEY}` }],
    ["config_url https", { config_url: "https://example.org/c.json" }],
    ["cloud_userdata", { cloud_userdata: b64("#cloud-config\n") }],
    ["product key", { os_product_key: "ABCDE-12345-FGHIJ-67890-KLMNO" }],
    ["answer file", { os_answer_file: "https://example.org/unattend.xml" }],
    ["format case", { img_format: "DiskDump" }],
    ["extdump", { img_format: "extdump" }],
    ["ntfsdump", { img_format: "ntfsdump" }],
  ])("%s", (_name, p) => {
    expect(problems(p)).toEqual([]);
  });
});

describe("OS parameters: bad values, each one line", () => {
  test.each<[string, RawParams, RegExp]>([
    ["missing img_id", { img_id: "" }, /^img_id: missing/],
    ["missing format", { img_format: "" }, /^img_format: missing/],
    ["bad format", { img_format: "vmdk" }, /^img_format: "vmdk" is not one of diskdump, extdump, ntfsdump, qcow2/],
    ["passwd and hash (original bug: create-only check)", { img_passwd: "a", img_passwd_hash: "$6$a$b" }, /give only one of them/],
    ["empty passwd and hash both defined", { img_passwd: "", img_passwd_hash: "$6$a$b" }, /give only one of them/],
    ["bad hash (original verify ignored it)", { img_passwd_hash: "plaintext password" }, /^img_passwd_hash: not a crypt\(3\) hash/],
    ["properties not JSON (original never parsed)", { img_properties: "{oops" }, /^img_properties: not valid JSON/],
    ["properties a list", { img_properties: "[1]" }, /must be a JSON object/],
    ["property nested", { img_properties: '{"A":{"b":1}}' }, /property A must be a string/],
    ["property bad name", { inst_properties: '{"a b":"1"}' }, /^inst_properties: property name "a b"/],
    ["personality not a list", { img_personality: "{}" }, /must be a JSON list/],
    ["personality relative path", { img_personality: JSON.stringify([{ path: "etc/x", contents: "" }]) }, /img_personality\[0\]: path must be absolute/],
    ["personality dotdot", { img_personality: JSON.stringify([{ path: "/etc/../x", contents: "" }]) }, /must not contain '\.\.'/],
    ["personality bad base64", { img_personality: JSON.stringify([{ path: "/x", contents: "@@@" }]) }, /contents is not base64/],
    ["personality bad mode", { img_personality: JSON.stringify([{ path: "/x", contents: "", mode: 99999 }]) }, /mode must be between 0 and 4095/],
    ["personality bad owner", { img_personality: JSON.stringify([{ path: "/x", contents: "", owner: "a b" }]) }, /owner is not a user name/],
    ["auth key garbage", { auth_keys: "not a key" }, /^auth_keys: line 1 is not an OpenSSH public key/],
    ["config_url scheme", { config_url: "ftp://x/y" }, /^config_url: scheme must be one of http, https$/],
    ["config_url file:// (a node file, read as root)", { config_url: "file:///etc/x.json" }, /^config_url: scheme must be one of http, https$/],
    ["config_url not a URL", { config_url: "nonsense" }, /^config_url: not a URL/],
    ["cloud_userdata", { cloud_userdata: "not base64!" }, /^cloud_userdata: not base64/],
    ["product key", { os_product_key: "ABCDE-12345" }, /^os_product_key: must be five groups/],
    ["answer file", { os_answer_file: "gopher://x" }, /^os_answer_file: scheme must be/],
    ["answer file over ftp (cannot be fetched)", { os_answer_file: "ftp://x/unattend.xml" }, /^os_answer_file: scheme must be one of http, https$/],
    ["answer file from a host file (would copy it into the guest)", { os_answer_file: "file:///etc/shadow" }, /^os_answer_file: scheme must be one of http, https$/],
  ])("%s", (_name, p, re) => {
    const found = problems(p);
    expect(found.length).toBeGreaterThanOrEqual(1);
    expect(found.some((l) => re.test(l))).toBe(true);
    for (const l of found) expect(l).not.toContain("\n");
  });

  test("all problems are reported at once", () => {
    const found = problems({ img_format: "raw", img_properties: "x", auth_keys: "y", os_product_key: "z" });
    expect(found).toHaveLength(4);
  });

  test("config_url does not switch verify off (original bug 10), but img_id may come from it", () => {
    expect(problems({ img_id: "", img_format: "", config_url: "https://x/c.json" }, true)).toEqual([]);
    expect(problems({ config_url: "https://x/c.json", img_passwd_hash: "bad" }, true)).toHaveLength(1);
    expect(problems({ img_id: "", config_url: "https://x/c.json" }, false)).toHaveLength(1);
  });
});

describe("precedence: config file < OS parameters < config_url", () => {
  const server = { url: "", stop: () => {} };
  beforeAll(() => {
    const s = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const p = new URL(req.url).pathname;
        if (p === "/c.json") return Response.json({ IMG_PASSWD: "from-url", img_format: "extdump", unknown: 1, Img_Properties: { USERS: "u" } });
        if (p === "/hop") return Response.redirect("/c.json", 302);
        if (p === "/loop") return Response.redirect("/loop", 302);
        if (p === "/big") return new Response("x".repeat(5000));
        if (p === "/list") return Response.json([1]);
        return new Response("no", { status: 404 });
      },
    });
    server.url = `http://user:pw@127.0.0.1:${s.port}`;
    server.stop = () => s.stop(true);
  });
  afterAll(() => server.stop());

  test("OSP overrides the config preset, set-but-empty counts", () => {
    const c = parseConfig("IMG_ID=fromconf\nIMG_FORMAT=diskdump\nIMG_PASSWD=conf", null);
    expect(mergeParams(c, { img_id: "fromosp", img_passwd: "" })).toEqual({ img_id: "fromosp", img_format: "diskdump", img_passwd: "" });
  });

  test("config_url overrides OS parameters; unknown keys reported", async () => {
    const c = parseConfig("", null);
    const r = await resolveParams(c, { img_id: "x", img_format: "diskdump", img_passwd: "osp", config_url: `${server.url}/hop` });
    expect(r.params.password).toBe("from-url");
    expect(r.params.imgFormat).toBe("extdump");
    expect(r.params.imgProperties).toEqual({ USERS: "u" });
    expect(r.notes.join()).toContain("unknown");
  });

  test.each([
    ["/missing", /config_url http:\/\/127\.0\.0\.1:\d+\/missing: HTTP 404/],
    ["/loop", /more than 5 redirects/],
    ["/big", /larger than 1024 bytes/],
    ["/list", /not a JSON object/],
  ])("config_url %s fails with one line and no credentials", async (path, re) => {
    const c = parseConfig("CONFIG_URL_MAX_BYTES=1024", null);
    const err = (await resolveParams(c, { img_id: "x", img_format: "diskdump", config_url: `${server.url}${path}` }).catch((e) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(re);
    expect(err.message).not.toContain("pw@");
  });

  test("config_url file:// is refused before anything is read; applyConfigDocument", async () => {
    const d = mkdtempSync(join(tmpdir(), "curl-"));
    writeFileSync(join(d, "c.json"), JSON.stringify({ img_id: "fromfile" }));
    const err = (await resolveParams(parseConfig("", null), { img_format: "diskdump", config_url: `file://${d}/c.json` }).catch((e) => e)) as Error;
    expect(err.message).toBe("bad OS parameters: config_url: scheme must be one of http, https");
    expect(() => applyConfigDocument({}, "str", "x")).toThrow(/not a JSON object/);
  });
});

/**
 * Real Ganeti 3.0 (single-node cluster on loopback) drives snf-image:
 * gnt-instance add / reinstall / rename, a failing add whose job error names
 * the cause, verify rejecting bad parameters, and gnt-backup export → import
 * giving an identical disk.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HELPER_DIR, OS_DIR, placeImage } from "../lib/deploy.ts";
import { addArgs, osParamValue, clusterDown, clusterUp, gnt, gntOk, installOs, instanceDiskDir, lastOsLog, NODE } from "../lib/ganeti.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";

const CONF = "/etc/snf-image/snf-image.conf";
const OS = "snf-image+default";
let work: string;
let img: DebianImage;
let uninstall: () => Promise<void> = async () => {};
let savedConf: string | null = null;
const instances: string[] = [];

function diskOf(instance: string): string {
  const dir = instanceDiskDir(instance);
  const f = readdirSync(dir).find((n) => n.endsWith(".disk0"));
  if (!f) throw new Error(`no disk0 in ${dir}`);
  return join(dir, f);
}

function check(instance: string, password: string, hostname = instance) {
  const m = mountDisk(diskOf(instance), img.rootPartition);
  try {
    expect(m.read("/etc/hostname").trim()).toBe(hostname);
    expect(verifyCrypt(password, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
    expect(m.read("/root/from-ganeti.txt")).toBe("hi\n");
  } finally {
    m.close();
  }
}

async function remove(name: string) {
  await gnt(["instance", "remove", "-f", "--ignore-failures", name]);
}

const personality = JSON.stringify([{ path: "/root/from-ganeti.txt", contents: Buffer.from("hi\n").toString("base64"), mode: 384 }]);

beforeAll(async () => {
  img = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  work = mkdtempSync("/var/tmp/snf-ganeti-e2e-");
  const images = join(work, "images");
  mkdirSync(images);
  placeImage(img.path, join(images, "bookworm"));
  if (existsSync(CONF)) {
    savedConf = `${CONF}.snf-test-saved`;
    renameSync(CONF, savedConf);
  }
  mkdirSync("/etc/snf-image", { recursive: true });
  // Ganeti resets the environment, so the node's config file is the only way in.
  writeFileSync(CONF, `IMAGE_DIR="${images}"\nHELPER_DIR="${HELPER_DIR}"\nHELPER_SOFT_TIMEOUT="600"\n`);
  const t = await clusterUp();
  console.log(`cluster up in ${t.toFixed(1)} s`);
  uninstall = await installOs(OS_DIR);
}, 1_800_000);

afterAll(async () => {
  for (const i of instances) await remove(i);
  await uninstall();
  rmSync(CONF, { force: true });
  if (savedConf) renameSync(savedConf, CONF);
  if (work) rmSync(work, { recursive: true, force: true });
  // Leave the machine as we found it (hostname, /etc/hosts, daemons); SNF_TEST_KEEP_CLUSTER=1 keeps it.
  if (!process.env.SNF_TEST_KEEP_CLUSTER) console.log(`cluster down in ${(await clusterDown()).toFixed(1)} s`);
}, 300_000);

describe("real Ganeti drives snf-image", () => {
  test("gnt-os sees snf-image with its parameters", async () => {
    const d = await gnt(["os", "diagnose"]);
    expect(d.stdout + d.stderr).toMatch(/snf-image.*valid/);
    const info = await gntOk(["os", "info", "snf-image"]);
    for (const p of ["img_id", "img_format", "img_passwd", "img_personality", "config_url", "auth_keys"]) expect(info).toContain(p);
  }, 120_000);

  test("add, reinstall with a new password, rename", async () => {
    const name = "vm1.snf.test";
    instances.push(name);
    const add = await gnt(addArgs({ os: OS, instance: name, sizeMiB: 3072, params: { img_id: "bookworm", img_format: "diskdump", img_passwd: "first-Pw1", img_personality: personality } }));
    if (add.code !== 0) console.log(add.stdout + add.stderr);
    expect(add.code).toBe(0);
    check(name, "first-Pw1");
    const log = await lastOsLog("add", name);
    expect(log?.text).toContain("deployed in");
    expect(log?.text).not.toContain("first-Pw1");

    const re = await gnt(["instance", "reinstall", "-f", "-O", `img_id=bookworm,img_format=diskdump,img_passwd=second-Pw2,img_personality=${osParamValue(personality)}`, name]);
    if (re.code !== 0) console.log(re.stdout + re.stderr);
    expect(re.code).toBe(0);
    check(name, "second-Pw2");

    const newName = "vm1-renamed.snf.test";
    const rn = await gnt(["instance", "rename", "-f", "--no-name-check", "--no-ip-check", name, newName]);
    if (rn.code !== 0) console.log(rn.stdout + rn.stderr);
    expect(rn.code).toBe(0);
    instances[instances.indexOf(name)] = newName;
    check(newName, "second-Pw2", newName);
  }, 1_200_000);

  test("a failing add shows the cause in Ganeti's error", async () => {
    const name = "vm-bad.snf.test";
    instances.push(name);
    const r = await gnt(addArgs({ os: OS, instance: name, sizeMiB: 3072, params: { img_id: "no-such-image", img_format: "diskdump", img_passwd: "x" } }));
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/OS create script failed[\s\S]*image no-such-image not found/);
    await remove(name);
  }, 300_000);

  test("verify rejects bad parameters before anything runs", async () => {
    const name = "vm-verify.snf.test";
    const r = await gnt(addArgs({ os: OS, instance: name, sizeMiB: 3072, params: { img_id: "bookworm", img_format: "vmdk", img_passwd: "x" } }));
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/img_format: "vmdk" is not one of diskdump, extdump, ntfsdump, qcow2/);
    await remove(name);
  }, 300_000);

  test("gnt-backup export then import gives an identical disk", async () => {
    const name = "vm-exp.snf.test";
    instances.push(name);
    const add = await gnt(addArgs({ os: OS, instance: name, sizeMiB: 2048, params: { img_id: "bookworm", img_format: "diskdump", img_passwd: "exp-Pw3", img_personality: personality } }));
    expect(add.code).toBe(0);
    const sum = (f: string) => Bun.spawnSync(["sha256sum", f], { stdout: "pipe" }).stdout.toString().split(" ")[0];
    const before = sum(diskOf(name));
    const ex = await gnt(["backup", "export", "-n", NODE, name]);
    if (ex.code !== 0) console.log(ex.stdout + ex.stderr);
    expect(ex.code).toBe(0);
    expect((await lastOsLog("export", name))?.text ?? "").toMatch(/exported disk 0/);
    await remove(name);
    // Same name: Ganeti runs no rename after the import, so the bytes must match exactly.
    const im = await gnt([
      "backup", "import", "-n", NODE, `--src-node=${NODE}`, `--src-dir=/var/lib/ganeti/export/${name}`, "-t", "file",
      "--disk", "0:size=2048M", "--no-nics", "--no-name-check", "--no-ip-check", name,
    ]);
    if (im.code !== 0) console.log(im.stdout + im.stderr);
    expect(im.code).toBe(0);
    expect((await lastOsLog("import", name))?.text ?? "").toMatch(/imported disk 0/);
    expect(sum(diskOf(name))).toBe(before);
    check(name, "exp-Pw3");
  }, 1_800_000);
});

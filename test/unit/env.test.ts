import { describe, expect, test } from "bun:test";
import { SnfError } from "../../src/errors.ts";
import { parseCreateEnv, parseGanetiEnv, parseRenameEnv, parseTransferEnv } from "../../src/ganeti/env.ts";

/** The environment of a real create call (Ganeti 3.0.2, shared/docs/ganeti-os-interface.md). */
export const REAL_CREATE_ENV: Record<string, string> = {
  DEBUG_LEVEL: "0",
  DISK_COUNT: "1",
  DISK_0_ACCESS: "rw",
  DISK_0_BACKEND_TYPE: "file:loop",
  DISK_0_PATH: "/srv/ganeti/file-storage/inst1.example/7c49dfd8.file.disk0",
  DISK_0_SIZE: "64",
  DISK_0_UUID: "9a3d6f22-9fb7-448e-a3dc-e7eab5a02268",
  DISK_0_NAME: "root",
  HYPERVISOR: "fake",
  INSTANCE_NAME: "inst1.example",
  INSTANCE_OS: "snf-image+default",
  INSTANCE_UUID: "2c90817f-389f-4d87-a2c9-806ce8913754",
  INSTANCE_PRIMARY_NODE: "26253b95-418f-4a21-a6df-04fa8ba17984",
  INSTANCE_SECONDARY_NODES: "",
  INSTANCE_CTIME: "1795651653.820277",
  INSTANCE_MTIME: "1795651653.886015",
  INSTANCE_BE_maxmem: "128",
  INSTANCE_BE_vcpus: "1",
  INSTANCE_HV_migration_mode: "live",
  NIC_COUNT: "1",
  NIC_0_MAC: "aa:00:00:ba:e1:d0",
  NIC_0_UUID: "14d0bbb7-223b-4f58-aeb6-b21d5949c0a7",
  NIC_0_MODE: "routed",
  NIC_0_LINK: "100",
  NIC_0_IP: "127.0.3.10",
  NIC_0_NAME: "eth0",
  OSP_IMG_ID: "foo",
  OS_API_VERSION: "20",
  OS_NAME: "snf-image",
  OS_VARIANT: "default",
  PATH: "/sbin:/bin:/usr/sbin:/usr/bin",
};

function fails(script: Parameters<typeof parseGanetiEnv>[0], env: Record<string, string | undefined>): string {
  try {
    parseGanetiEnv(script, env);
  } catch (e) {
    expect(e).toBeInstanceOf(SnfError);
    const msg = (e as Error).message;
    expect(msg).not.toContain("\n");
    return msg;
  }
  throw new Error("expected a failure");
}

describe("Ganeti environment", () => {
  test("parses a real create environment", () => {
    const e = parseGanetiEnv("create", REAL_CREATE_ENV);
    expect(e.apiVersion).toBe(20);
    expect(e.instance?.name).toBe("inst1.example");
    expect(e.instance?.reinstall).toBe(false);
    expect(e.instance?.hv.migration_mode).toBe("live");
    expect(e.instance?.be.maxmem).toBe("128");
    expect(e.disks).toHaveLength(1);
    expect(e.disks[0]).toMatchObject({ index: 0, path: REAL_CREATE_ENV.DISK_0_PATH, sizeMiB: 64, backendType: "file:loop", name: "root" });
    expect(e.nics[0]).toMatchObject({ mac: "aa:00:00:ba:e1:d0", ip: "127.0.3.10", mode: "routed", link: "100" });
    expect(e.nics[0]?.network).toBeUndefined();
    expect(e.osp).toEqual({ img_id: "foo" });
  });

  test("reinstall, NIC network variables, unknown variables ignored", () => {
    const e = parseGanetiEnv("create", {
      ...REAL_CREATE_ENV,
      INSTANCE_REINSTALL: "1",
      NIC_0_NETWORK_NAME: "net1",
      NIC_0_NETWORK_SUBNET: "10.0.0.0/24",
      NIC_0_NETWORK_GATEWAY: "10.0.0.1",
      NIC_0_NETWORK_TAGS: "dhcp  nfdhcpd",
      SOMETHING_ELSE: "x",
      OSP_IMG_PASSWD: "",
    });
    expect(e.instance?.reinstall).toBe(true);
    expect(e.nics[0]?.network).toMatchObject({ name: "net1", subnet: "10.0.0.0/24", gateway: "10.0.0.1", tags: ["dhcp", "nfdhcpd"] });
    expect(e.osp).toHaveProperty("img_passwd", "");
  });

  test("verify needs only the core environment", () => {
    const e = parseGanetiEnv("verify", { OS_API_VERSION: "20", OSP_IMG_FORMAT: "diskdump", OS_NAME: "snf-image" });
    expect(e.osp.img_format).toBe("diskdump");
  });

  test.each([
    [{ OS_API_VERSION: "15" }, /API version "15" is not supported/],
    [{ OS_API_VERSION: undefined }, /OS_API_VERSION is missing/],
    [{ INSTANCE_NAME: undefined }, /INSTANCE_NAME is missing/],
    [{ DISK_COUNT: "0" }, /DISK_COUNT is 0/],
    [{ DISK_COUNT: "x" }, /DISK_COUNT must be a whole number/],
    [{ DISK_0_PATH: undefined }, /DISK_0_PATH is missing/],
    [{ NIC_0_MAC: "nonsense" }, /NIC_0_MAC "nonsense" is not a MAC address/],
  ])("bad create environment %p", (patch, re) => {
    expect(fails("create", { ...REAL_CREATE_ENV, ...patch })).toMatch(re);
  });

  test("rename needs OLD_INSTANCE_NAME", () => {
    expect(fails("rename", REAL_CREATE_ENV)).toMatch(/OLD_INSTANCE_NAME is missing/);
    expect(parseGanetiEnv("rename", { ...REAL_CREATE_ENV, OLD_INSTANCE_NAME: "old" }).instance?.oldName).toBe("old");
  });

  test("export and import variables", () => {
    const ex = parseGanetiEnv("export", { ...REAL_CREATE_ENV, EXPORT_INDEX: "0", EXPORT_DEVICE: "/dev/loop3", EXP_SIZE_FD: "7" });
    expect(ex.transfer).toEqual({ index: 0, diskPath: "/dev/loop3", diskUri: undefined, sizeFd: 7 });
    const im = parseGanetiEnv("import", { ...REAL_CREATE_ENV, IMPORT_INDEX: "0", IMPORT_DISK_PATH: "/d", IMPORT_DEVICE: "/old" });
    expect(im.transfer?.diskPath).toBe("/d");
    expect(fails("import", { ...REAL_CREATE_ENV, IMPORT_INDEX: "0" })).toMatch(/IMPORT_DISK_PATH is missing/);
  });

  test("typed per-script parsers carry what each script needs", () => {
    const c = parseCreateEnv(REAL_CREATE_ENV);
    expect(c.disk0).toBe(REAL_CREATE_ENV.DISK_0_PATH!);
    expect(c.instance.name).toBe(REAL_CREATE_ENV.INSTANCE_NAME!);
    expect(() => parseCreateEnv({ ...REAL_CREATE_ENV, DISK_0_PATH: "" })).toThrow(/DISK_0_PATH is missing/);
    expect(parseRenameEnv({ ...REAL_CREATE_ENV, OLD_INSTANCE_NAME: "old" }).instance.oldName).toBe("old");
    expect(() => parseRenameEnv(REAL_CREATE_ENV)).toThrow(/OLD_INSTANCE_NAME is missing/);
    const t = parseTransferEnv("export", { ...REAL_CREATE_ENV, EXPORT_INDEX: "0", EXPORT_DISK_PATH: "/dev/loop4" });
    expect(t.transfer).toEqual({ index: 0, diskPath: "/dev/loop4", diskUri: undefined, sizeFd: undefined });
    expect(parseGanetiEnv("verify", { OS_API_VERSION: "20" }).instance).toBeUndefined();
  });
});

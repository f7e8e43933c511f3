/**
 * The qemu/TCG boot harness (test/lib/boot.ts) on a real bootable bookworm
 * image whose root password is set at build time for this test only.
 * Needs root (image build); each boot is ~30 s under TCG on 2 cores.
 */
import { afterAll, expect, test } from "bun:test";
import { qemuProper } from "../lib/deploy.ts";
import { bootAndLogin, type Session } from "../lib/boot.ts";
import { debianImage, type DebianImage } from "../lib/images.ts";

const PASSWORD = "snf-boot-harness-pw";
let session: Session | undefined;

async function image(): Promise<DebianImage> {
  return debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true, rootPassword: PASSWORD });
}

/** qemu processes whose command line mentions this disk. */
const qemuFor = (disk: string): number[] => qemuProper(disk);

afterAll(async () => {
  await session?.close();
});

test("boots under TCG, logs in as root on ttyS0, runs commands, powers off", async () => {
  const img = await image();
  const before = qemuFor(img.path);
  const t0 = performance.now();
  session = await bootAndLogin({
    disk: img.path, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid,
    user: "root", password: PASSWORD, mac: "52:54:00:aa:bb:01", timeoutSec: 400,
  });
  const login = (performance.now() - t0) / 1000;
  try {
    expect(await session.run("hostname")).toBe("template\n");
    expect(await session.run("id -u")).toBe("0\n");
    expect(await session.run("findmnt -n -o SOURCE,FSTYPE /")).toMatch(/ext4/);
    expect((await session.run("cat /sys/class/net/*/address")).split("\n")).toContain("52:54:00:aa:bb:01");
    // multi-line output and non-zero exits come back intact
    expect(await session.run("printf 'a\\nb\\n'")).toBe("a\nb\n");
    const r = await session.exec("echo oops >&2; false");
    expect(r).toEqual({ code: 1, output: "oops\n" });
    await expect(session.run("(exit 3)")).rejects.toThrow(/exited 3/);
  } catch (e) {
    await session.close();
    session = undefined;
    throw e;
  }
  const t1 = performance.now();
  await session.close();
  session = undefined;
  console.error(`[boot.test] login after ${login.toFixed(1)} s, poweroff ${((performance.now() - t1) / 1000).toFixed(1)} s`);
  expect(qemuFor(img.path).filter((pid) => !before.includes(pid))).toEqual([]);
}, 600_000);

test("a wrong password is a clear error and leaves no qemu behind", async () => {
  const img = await image();
  const before = qemuFor(img.path);
  const p = bootAndLogin({
    disk: img.path, kernel: img.kernel!, initrd: img.initrd!, rootUuid: img.rootUuid,
    user: "root", password: "not-the-password", timeoutSec: 400,
  });
  await expect(p).rejects.toThrow(/login as root failed \(Login incorrect\); last console lines:/);
  expect(qemuFor(img.path).filter((pid) => !before.includes(pid))).toEqual([]);
}, 600_000);

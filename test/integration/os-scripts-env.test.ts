/** The import/export/rename scripts end to end through the CLI, each with its typed environment (no VM). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const CLI = path.resolve(import.meta.dir, "../../src/cli.ts");
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-os-env-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const BASE = { PATH: process.env.PATH ?? "/usr/bin:/bin", OS_API_VERSION: "20", INSTANCE_NAME: "vm1.example.org", DISK_COUNT: "0" };

test("export then import moves a disk byte for byte; export needs its disk path", async () => {
  const src = path.join(dir, "src.raw");
  const dst = path.join(dir, "dst.raw");
  const data = new Uint8Array(3 * 1024 * 1024 + 512);
  crypto.getRandomValues(data.subarray(0, 65536));
  data.set(data.subarray(0, 65536), 2 * 1024 * 1024);
  fs.writeFileSync(src, data);
  fs.writeFileSync(dst, new Uint8Array(data.length).fill(7));
  const ex = Bun.spawn(["bun", CLI, "os", "export"], { env: { ...BASE, EXPORT_INDEX: "0", EXPORT_DISK_PATH: src }, stdout: "pipe", stderr: "pipe" });
  const im = Bun.spawn(["bun", CLI, "os", "import"], { env: { ...BASE, IMPORT_INDEX: "0", IMPORT_DISK_PATH: dst }, stdin: ex.stdout, stderr: "pipe" });
  expect(await ex.exited).toBe(0);
  expect(await im.exited).toBe(0);
  expect(Buffer.compare(fs.readFileSync(dst), Buffer.from(data))).toBe(0);

  const bad = Bun.spawn(["bun", CLI, "os", "export"], { env: { ...BASE, EXPORT_INDEX: "0" }, stdout: "pipe", stderr: "pipe" });
  const err = await new Response(bad.stderr).text();
  expect(await bad.exited).toBe(1);
  expect(err.trim().split("\n").at(-1)).toBe("snf-image export: ERROR: Ganeti environment: EXPORT_DISK_PATH is missing (URI-only disks are not supported)");
}, 60_000);

test("rename: the same name leaves the disk alone; a missing OLD_INSTANCE_NAME is one line", async () => {
  const disk = path.join(dir, "disk0.raw");
  fs.writeFileSync(disk, new Uint8Array(1024 * 1024));
  const env = { ...BASE, DISK_COUNT: "1", DISK_0_PATH: disk };
  const same = Bun.spawn(["bun", CLI, "os", "rename"], { env: { ...env, OLD_INSTANCE_NAME: BASE.INSTANCE_NAME }, stdout: "pipe", stderr: "pipe" });
  const out = (await new Response(same.stdout).text()) + (await new Response(same.stderr).text());
  expect(await same.exited).toBe(0);
  expect(out).toContain("is unchanged: nothing to rename");
  const missing = Bun.spawn(["bun", CLI, "os", "rename"], { env, stdout: "pipe", stderr: "pipe" });
  const err = await new Response(missing.stderr).text();
  expect(await missing.exited).toBe(1);
  expect(err.trim().split("\n").at(-1)).toBe("snf-image rename: ERROR: Ganeti environment: OLD_INSTANCE_NAME is missing");
}, 60_000);

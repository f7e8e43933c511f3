import { afterAll, beforeAll, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { exportDisk, importDisk } from "../../src/disk/reader.ts";
import { SnfError } from "../../src/errors.ts";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "snf-reader-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("export writes the size to the size fd and the exact disk to the out fd; import restores it", async () => {
  const disk = path.join(dir, "disk");
  const data = new Uint8Array(9 * 1024 * 1024 + 512);
  crypto.getRandomValues(data.subarray(0, 65536));
  data.fill(3, 5 * 1024 * 1024, 5 * 1024 * 1024 + 100);
  fs.writeFileSync(disk, data);
  const out = fs.openSync(path.join(dir, "out"), "w");
  const size = fs.openSync(path.join(dir, "size"), "w");
  const n = await exportDisk(disk, out, { sizeFd: size });
  fs.closeSync(out);
  fs.closeSync(size);
  expect(n).toBe(data.length);
  expect(fs.readFileSync(path.join(dir, "size"), "utf8")).toBe(`${data.length}\n`);
  expect(Bun.hash(fs.readFileSync(path.join(dir, "out")))).toBe(Bun.hash(data));

  const back = path.join(dir, "back");
  fs.writeFileSync(back, new Uint8Array(data.length).fill(0xee));
  const r = await importDisk(Bun.file(path.join(dir, "out")).stream(), back);
  expect(r.bytes).toBe(data.length);
  expect(Bun.hash(fs.readFileSync(back))).toBe(Bun.hash(data));
});

test("export through a pipe to a child (stdout-like)", async () => {
  const disk = path.join(dir, "disk2");
  const data = new Uint8Array(5 * 1024 * 1024 + 4096);
  crypto.getRandomValues(data.subarray(0, 65536));
  fs.writeFileSync(disk, data);
  const script = `import { exportDisk } from ${JSON.stringify(path.resolve(import.meta.dir, "../../src/disk/reader.ts"))};
    await exportDisk(${JSON.stringify(disk)}, 1);`;
  const p = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe" });
  const got = new Uint8Array(await new Response(p.stdout).arrayBuffer());
  expect(await p.exited).toBe(0);
  expect(got.length).toBe(data.length);
  expect(Bun.hash(got)).toBe(Bun.hash(data));
});

test("import larger than the disk fails; missing export disk is one line", async () => {
  const small = path.join(dir, "small");
  fs.writeFileSync(small, new Uint8Array(1024 * 1024));
  const e = await importDisk(new Blob([new Uint8Array(2 * 1024 * 1024)]).stream(), small).catch((e) => e);
  expect(e).toBeInstanceOf(SnfError);
  expect(fs.statSync(small).size).toBe(1024 * 1024);
  const e2 = await exportDisk(path.join(dir, "none"), 1).catch((e) => e);
  expect(e2).toBeInstanceOf(SnfError);
  expect(e2.message).toMatch(/does not exist/);
});

import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { TASKS } from "../../helper/tasks/index.ts";

const root = join(import.meta.dir, "../..");

test("docs/tasks.md lists the task table in order with its flags", () => {
  const rows = readFileSync(join(root, "docs/tasks.md"), "utf8")
    .split("\n")
    .filter((l) => /^\| \d+ \|/.test(l))
    .map((l) => l.split("|").map((c) => c.trim()));
  expect(rows.map((r) => r[2])).toEqual(TASKS.map((t) => t.name));
  for (const [i, t] of TASKS.entries()) {
    const r = rows[i]!;
    expect([r[3] === "yes", r[4] === "yes", r[5] === "yes", r[6] === "yes", r[7], r[8] === "yes"]).toEqual([
      t.mounted,
      t.excludable,
      !!t.fsResize,
      !!t.cloudInitSkip,
      (t.families ?? ["all"]).join("/"),
      (t.modes ?? ["create"]).includes("rename"),
    ]);
  }
});

test("docs/architecture.md names files that exist", () => {
  const text = readFileSync(join(root, "docs/architecture.md"), "utf8");
  const paths = [...text.matchAll(/\b((?:src|helper|packaging|test|bench)\/[\w./-]+\.(?:ts|sh))\b/g)].map((m) => m[1]!);
  expect(paths.length).toBeGreaterThan(10);
  const missing = paths.filter((p) => !p.includes("<") && !Bun.file(join(root, p)).size);
  expect(missing).toEqual([]);
});

import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { causeOf, errnoOf, ReportedFailure, SnfError } from "../../src/errors.ts";

test("errnoOf/causeOf: the errno name of a real failure, else the message", () => {
  let err: unknown;
  try {
    fs.readFileSync("/nonexistent/snf-image-errors-test");
  } catch (e) {
    err = e;
  }
  expect(errnoOf(err)).toBe("ENOENT");
  expect(causeOf(err)).toBe("ENOENT");
  expect(errnoOf(new Error("plain"))).toBeUndefined();
  expect(causeOf(new Error("plain"))).toBe("plain");
  expect(errnoOf(null)).toBeUndefined();
  expect(causeOf("text")).toBe("text");
  expect(errnoOf({ code: 5 })).toBeUndefined();
});

/** The last stderr line of runScript with a body that throws what `make` builds. */
async function lastLine(make: string): Promise<{ line: string; code: number }> {
  const root = path.resolve(import.meta.dir, "../..");
  const script = `
    import { runScript } from "${root}/src/commands/run.ts";
    import { VerifyFailed } from "${root}/src/commands/os.ts";
    import { SnfError } from "${root}/src/errors.ts";
    await runScript("verify", async () => { throw ${make}; });`;
  const p = Bun.spawn(["bun", "-e", script], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return { line: err.trim().split("\n").at(-1) ?? "", code };
}

test("runScript prints a ReportedFailure (VerifyFailed) without ERROR:, an SnfError with it", async () => {
  expect(new ReportedFailure("x")).toBeInstanceOf(SnfError);
  expect(await lastLine("new VerifyFailed(2)")).toEqual({ line: "snf-image verify: 2 invalid OS parameters", code: 1 });
  expect(await lastLine('new SnfError("disk gone")')).toEqual({ line: "snf-image verify: ERROR: disk gone", code: 1 });
}, 30_000);

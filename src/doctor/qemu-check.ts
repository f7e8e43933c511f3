/** doctor: the configured qemu is present and runs. */
import fs from "node:fs";
import { type CheckOutcome, fail, ok } from "./schema.ts";

const SEARCH = `${process.env.PATH ?? ""}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`;

export function resolveQemu(qemu: string): string | null {
  if (qemu.includes("/")) {
    try {
      fs.accessSync(qemu, fs.constants.X_OK);
      return fs.statSync(qemu).isFile() ? qemu : null;
    } catch {
      return null;
    }
  }
  return Bun.which(qemu, { PATH: SEARCH });
}

export async function checkQemu(qemu: string): Promise<{ outcome: CheckOutcome; path: string | null }> {
  const path = resolveQemu(qemu);
  if (!path) return { path, outcome: fail(`QEMU=${qemu} not found or not executable`, `apt-get install qemu-system-x86, or set QEMU in the config to its path`) };
  const p = Bun.spawn([path, "--version"], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  clearTimeout(timer);
  const first = out.split("\n")[0]?.trim() ?? "";
  if (code !== 0 || !/QEMU emulator version/i.test(first)) {
    return { path, outcome: fail(`${path} --version failed (exit ${code}): not a working qemu`, `apt-get install --reinstall qemu-system-x86, or fix QEMU in the config`) };
  }
  return { path, outcome: ok(`${path}: ${first}`) };
}

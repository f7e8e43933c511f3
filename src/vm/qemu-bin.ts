/** Where the qemu binary is (QEMU setting: a name on PATH or a path). */
import { existsSync } from "node:fs";
import { SnfError } from "../errors.ts";

export function requireQemu(qemu: string): string {
  const found = qemu.includes("/") ? (existsSync(qemu) ? qemu : null) : Bun.which(qemu, { PATH: `${process.env.PATH ?? ""}:/usr/bin:/usr/local/bin` });
  if (!found) throw new SnfError(`qemu ${qemu} not found: install qemu-system-x86 (or fix QEMU in the config)`);
  return found;
}

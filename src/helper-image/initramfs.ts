/**
 * The small initramfs: static busybox with applet links, /sbin/modprobe,
 * /dev/console and /dev/null, the boot modules with their insmod order
 * (lib/modules/boot.list) and shim 1 as /init. Uncompressed newc cpio.
 */
import fs from "node:fs";
import path from "node:path";
import { exec } from "../exec.ts";
import { type CpioEntry, writeCpio } from "./cpio.ts";

export interface InitramfsInput {
  busybox: string;
  init: string;
  modRoot: string;
  kernelVersion: string;
  /** boot modules in insmod order, relative to lib/modules/VERSION */
  bootModules: string[];
}

export async function buildInitramfs(i: InitramfsInput): Promise<Uint8Array> {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const dir = (d: string) => {
    for (let p = d; p && p !== "." && !dirs.has(p); p = path.dirname(p)) {
      dirs.add(p);
      entries.push({ path: p, type: "dir" });
    }
  };
  for (const d of ["bin", "sbin", "proc", "sys", "dev", "newroot", "lib/modules"]) dir(d);
  entries.push({ path: "dev/console", type: "chardev", major: 5, minor: 1, mode: 0o600 });
  entries.push({ path: "dev/null", type: "chardev", major: 1, minor: 3, mode: 0o666 });
  entries.push({ path: "bin/busybox", type: "file", data: fs.readFileSync(i.busybox), mode: 0o755 });
  const applets = (await exec([i.busybox, "--list"])).stdout.split("\n").map((s) => s.trim()).filter(Boolean);
  for (const a of new Set(applets)) if (a !== "busybox" && !a.includes("/")) entries.push({ path: `bin/${a}`, type: "symlink", target: "busybox" });
  entries.push({ path: "sbin/modprobe", type: "symlink", target: "../bin/busybox" });
  const kd = path.join(i.modRoot, "lib/modules", i.kernelVersion);
  for (const rel of i.bootModules) {
    const p = `lib/modules/${i.kernelVersion}/${rel}`;
    dir(path.dirname(p));
    entries.push({ path: p, type: "file", data: fs.readFileSync(path.join(kd, rel)) });
  }
  const list = i.bootModules.map((rel) => `${i.kernelVersion}/${rel}\n`).join("");
  entries.push({ path: "lib/modules/boot.list", type: "file", data: new TextEncoder().encode(list) });
  entries.push({ path: "init", type: "file", data: new TextEncoder().encode(i.init), mode: 0o755 });
  return writeCpio(entries);
}

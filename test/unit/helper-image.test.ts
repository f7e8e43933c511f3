import { afterAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import initShim from "../../helper/boot/init.sh" with { type: "text" };
import init2Shim from "../../helper/boot/init2.sh" with { type: "text" };
import { renderShim } from "../../src/helper-image/build.ts";
import { writeCpio } from "../../src/helper-image/cpio.ts";
import { hasPvhNote, parseKernelDepends } from "../../src/helper-image/kernel.ts";
import { parseLdd } from "../../src/helper-image/libs.ts";
import { loadHelperImage } from "../../src/helper-image/load.ts";
import { parseShowDepends } from "../../src/helper-image/modules.ts";
import { PROTOCOL_VERSION, TOOLS_DISK_SERIAL } from "../../src/protocol.ts";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "snf-hi-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("cpio", () => {
  const entries = [
    { path: "init", type: "file" as const, data: new TextEncoder().encode("#!/bin/sh\n"), mode: 0o755 },
    { path: "dev/console", type: "chardev" as const, major: 5, minor: 1 },
    { path: "bin", type: "dir" as const },
    { path: "dev", type: "dir" as const },
    { path: "bin/sh", type: "symlink" as const, target: "busybox" },
  ];

  test("deterministic and readable by cpio(1)", () => {
    const a = writeCpio(entries);
    const b = writeCpio([...entries].reverse());
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const f = path.join(tmp, "t.cpio");
    fs.writeFileSync(f, a);
    const r = Bun.spawnSync(["cpio", "-itv", "-F", f], { stderr: "pipe" });
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.toString().trim().split("\n");
    expect(lines.map((l) => l.replace(/^.* 1970 /, ""))).toEqual(["bin", "bin/sh -> busybox", "dev", "dev/console", "init"]);
    expect(lines[3]).toMatch(/^crw-------.* 5,\s+1 /);
    expect(lines[4]).toMatch(/^-rwxr-xr-x/);
  });

  test("rejects bad and duplicate paths", () => {
    expect(() => writeCpio([{ path: "../x", type: "dir" }])).toThrow();
    expect(() => writeCpio([{ path: "a", type: "dir" }, { path: "/a", type: "dir" }])).toThrow("duplicate");
  });
});

describe("parsers", () => {
  test("apt-cache depends", () => {
    expect(parseKernelDepends("linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n")).toBe("6.1.0-56-amd64");
    expect(parseKernelDepends("linux-image-amd64\n")).toBeNull();
  });

  test("modprobe --show-depends", () => {
    const out = "insmod /k/lib/modules/6.1/kernel/fs/jbd2/jbd2.ko \nbuiltin crc16\ninsmod /k/lib/modules/6.1/kernel/fs/ext4/ext4.ko \n";
    expect(parseShowDepends(out, "/k", "6.1")).toEqual(["kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"]);
    expect(parseShowDepends("insmod //lib/modules/6.1/kernel/a.ko\n", "/", "6.1")).toEqual(["kernel/a.ko"]);
    expect(() => parseShowDepends("insmod /elsewhere/a.ko\n", "/k", "6.1")).toThrow();
  });

  test("ldd", () => {
    const out = [
      "\tlinux-vdso.so.1 (0x00007ffc)",
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f00)",
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f01)",
    ].join("\n");
    expect(parseLdd(out)).toEqual(["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
  });

  test("PVH note detection on a synthetic ELF", () => {
    const elf = Buffer.alloc(0x200);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2;
    elf.writeBigUInt64LE(0x40n, 0x20); // phoff
    elf.writeUInt16LE(56, 0x36);
    elf.writeUInt16LE(1, 0x38);
    elf.writeUInt32LE(4, 0x40); // PT_NOTE
    elf.writeBigUInt64LE(0x100n, 0x48); // p_offset
    elf.writeBigUInt64LE(20n, 0x40 + 32); // p_filesz
    elf.writeUInt32LE(4, 0x100);
    elf.writeUInt32LE(4, 0x104);
    elf.writeUInt32LE(18, 0x108);
    elf.write("Xen\0", 0x10c, "latin1");
    expect(hasPvhNote(elf)).toBe(true);
    elf.writeUInt32LE(17, 0x108);
    expect(hasPvhNote(elf)).toBe(false);
    expect(hasPvhNote(Buffer.from("not an elf"))).toBe(false);
  });
});

describe("shims", () => {
  test("serial placeholder is filled and scripts parse", () => {
    const init = renderShim(initShim);
    expect(init).not.toContain("@TOOLS_DISK_SERIAL@");
    expect(init).toContain(`"${TOOLS_DISK_SERIAL}"`);
    for (const [name, text] of [["init", init], ["init2", renderShim(init2Shim)]] as const) {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, text);
      const r = Bun.spawnSync(["busybox", "sh", "-n", f], { stderr: "pipe" });
      expect(r.stderr.toString()).toBe("");
      expect(r.exitCode).toBe(0);
    }
  });
});

describe("loadHelperImage", () => {
  const manifest = (protocol: number) => ({
    protocol, version: "t", kernel: "6.1", built: "now", files: { kernel: "vmlinux", initrd: "initrd.cpio", tools: "tools.img" },
  });
  const make = (name: string, m: unknown, files = true) => {
    const d = path.join(tmp, name);
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, "manifest.json"), JSON.stringify(m));
    if (files) for (const f of ["vmlinux", "initrd.cpio", "tools.img"]) fs.writeFileSync(path.join(d, f), "x");
    return d;
  };

  test("ok", () => {
    const d = make("ok", manifest(PROTOCOL_VERSION));
    const h = loadHelperImage(d);
    expect(h.kernel).toBe(path.join(d, "vmlinux"));
    expect(h.tools).toBe(path.join(d, "tools.img"));
  });

  test("missing, old protocol, missing file", () => {
    expect(() => loadHelperImage(path.join(tmp, "nope"))).toThrow(/^helper image not found in .*: run `snf-image helper build`$/);
    expect(() => loadHelperImage(make("old", manifest(PROTOCOL_VERSION + 7)))).toThrow(
      `speaks protocol ${PROTOCOL_VERSION + 7}, this snf-image needs ${PROTOCOL_VERSION}: run \`snf-image helper build\``,
    );
    expect(() => loadHelperImage(make("half", manifest(PROTOCOL_VERSION), false))).toThrow("helper image not found");
  });
});

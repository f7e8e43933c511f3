/**
 * Registry hives for tests, built the way Windows' own tools are not
 * available here: a minimal empty hive (base block + one hbin with a root
 * key and its security cell) written byte by byte, then filled with
 * Debian's hivexsh (libhivex-bin), which allocates keys and values the way
 * hivex does for virt-* tools. Read back with hivexget — a reader
 * independent of helper/lib/hive.ts.
 */
import { rmSync, writeFileSync } from "node:fs";

/** An empty hive (root key "ROOT", no values) in `file`. */
export function writeEmptyHive(file: string): void {
  const base = Buffer.alloc(4096);
  const bin = Buffer.alloc(4096);
  base.write("regf", 0, "latin1");
  base.writeUInt32LE(1, 4);
  base.writeUInt32LE(1, 8);
  base.writeUInt32LE(1, 0x14); // major
  base.writeUInt32LE(3, 0x18); // minor
  base.writeUInt32LE(0, 0x1c); // primary file
  base.writeUInt32LE(1, 0x20); // direct memory load format
  base.writeUInt32LE(0x20, 0x24); // root cell
  base.writeUInt32LE(4096, 0x28); // bins size
  base.writeUInt32LE(1, 0x2c);
  base.write("snf-image test hive", 0x30, "utf16le");
  let sum = 0;
  for (let i = 0; i < 0x1fc; i += 4) sum = (sum ^ base.readUInt32LE(i)) >>> 0;
  base.writeUInt32LE(sum, 0x1fc);

  bin.write("hbin", 0, "latin1");
  bin.writeUInt32LE(0, 4);
  bin.writeUInt32LE(4096, 8);
  const rootOff = 0x20;
  const rootSize = 0x58; // 4 + 0x4c + "ROOT", 8-aligned
  const skOff = rootOff + rootSize;
  const sd = Buffer.from([1, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const skSize = Math.ceil((4 + 0x14 + sd.length) / 8) * 8;
  // root nk
  bin.writeInt32LE(-rootSize, rootOff);
  const nk = rootOff + 4;
  bin.write("nk", nk, "latin1");
  bin.writeUInt16LE(0x2c, nk + 2); // hive entry | no delete | compressed name
  bin.writeUInt32LE(0xffffffff, nk + 0x10); // parent
  bin.writeUInt32LE(0xffffffff, nk + 0x1c);
  bin.writeUInt32LE(0xffffffff, nk + 0x20);
  bin.writeUInt32LE(0xffffffff, nk + 0x28);
  bin.writeUInt32LE(skOff, nk + 0x2c);
  bin.writeUInt32LE(0xffffffff, nk + 0x30);
  bin.writeUInt16LE(4, nk + 0x48);
  bin.write("ROOT", nk + 0x4c, "latin1");
  // sk
  bin.writeInt32LE(-skSize, skOff);
  const sk = skOff + 4;
  bin.write("sk", sk, "latin1");
  bin.writeUInt32LE(skOff, sk + 4);
  bin.writeUInt32LE(skOff, sk + 8);
  bin.writeUInt32LE(1, sk + 0x0c);
  bin.writeUInt32LE(sd.length, sk + 0x10);
  sd.copy(bin, sk + 0x14);
  // the rest is one free cell
  const freeOff = skOff + skSize;
  bin.writeInt32LE(4096 - freeOff, freeOff);
  writeFileSync(file, Buffer.concat([base, bin]));
}

/** Run a hivexsh -w script on `file` (then commit). */
export function hivexsh(file: string, script: string): void {
  const f = `${file}.hivexsh`;
  writeFileSync(f, `${script}\ncommit\n`);
  try {
    const p = Bun.spawnSync(["hivexsh", "-w", "-f", f, file], { stdout: "pipe", stderr: "pipe" });
    if (p.exitCode !== 0) throw new Error(`hivexsh: ${p.stderr.toString().trim()}`);
  } finally {
    rmSync(f, { force: true });
  }
}

/** hivexget's text for one value ("" when missing). */
export function hivexget(file: string, key: string, value: string): string {
  const p = Bun.spawnSync(["hivexget", file, key, value], { stdout: "pipe", stderr: "pipe" });
  return p.exitCode === 0 ? p.stdout.toString().trim() : "";
}

/**
 * A SYSTEM hive shaped like Windows': Select\Current = `current`, two
 * control sets, Terminal Server with fDenyTSConnections = `deny` in the
 * current one (1 - deny in the other) and a few neighbouring values;
 * `sealed` adds Setup\SystemSetupInProgress/MiniSetupInProgress (XP sysprep).
 */
export function writeSystemHive(file: string, o: { current: number; deny: number; sealed?: boolean }): void {
  writeEmptyHive(file);
  const other = o.current === 1 ? 2 : 1;
  const cs = (n: number) => `ControlSet${String(n).padStart(3, "0")}`;
  const ts = (n: number, deny: number) =>
    [
      "cd \\",
      `add ${cs(n)}`,
      `cd ${cs(n)}`,
      "add Control",
      "cd Control",
      "add Terminal Server",
      "cd Terminal Server",
      "setval 3",
      "AllowRemoteRPC",
      "dword:00000000",
      "fDenyTSConnections",
      `dword:${deny.toString(16).padStart(8, "0")}`,
      "TSUserEnabled",
      "dword:00000000",
    ].join("\n");
  hivexsh(
    file,
    [
      "add Select",
      "cd Select",
      "setval 4",
      "Current",
      `dword:${o.current.toString(16).padStart(8, "0")}`,
      "Default",
      `dword:${o.current.toString(16).padStart(8, "0")}`,
      "Failed",
      "dword:00000000",
      "LastKnownGood",
      `dword:${other.toString(16).padStart(8, "0")}`,
      ...(o.sealed === undefined
        ? []
        : ["cd \\", "add Setup", "cd Setup", "setval 2", "SystemSetupInProgress", `dword:0000000${o.sealed ? 1 : 0}`, "MiniSetupInProgress", `dword:0000000${o.sealed ? 1 : 0}`]),
      ts(other, 1 - o.deny),
      ts(o.current, o.deny),
    ].join("\n"),
  );
}

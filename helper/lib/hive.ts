/**
 * A small reader for Windows registry hive files ("regf"), with one write:
 * overwriting an existing REG_DWORD in place. That is all the helper needs
 * (the SYSTEM hive's Select\Current and fDenyTSConnections), and an in-place
 * 4-byte write never allocates, moves or frees a cell, so the hive's
 * structure stays exactly as Windows left it.
 *
 * The file comes from the image: hostile. Every offset is checked against
 * the hive bins, every cell against its own size, every count against the
 * cell that holds it; reads go through the file descriptor (never the whole
 * file in memory) and the walk is bounded (MAX_CELLS_VISITED).
 *
 * Layout (offsets inside a cell's data): nk: "nk", flags u16 @2, subkey
 * count @0x14, subkey list @0x1C, value count @0x24, value list @0x28, name
 * length u16 @0x48, name @0x4C (latin-1 when flags & 0x20, else UTF-16LE).
 * Subkey lists: "lf"/"lh" (count u16, 8-byte entries), "li" (4-byte
 * entries), "ri" (4-byte entries pointing at lf/lh/li lists). vk: "vk", name
 * length u16 @2, data size u32 @4 (bit 31: data inline in the offset field),
 * data offset @8, type @0x0C, flags u16 @0x10 (bit 0: latin-1 name), name
 * @0x14.
 */
import * as fs from "node:fs";

export const REG_DWORD = 4;
const BASE_BLOCK = 4096;
/** Largest cell we read (a value list of 250k entries is already absurd). */
const MAX_CELL_BYTES = 1 << 20;
/** Upper bounds on cells and bytes read through one Hive (keeps a crafted hive from looping us). */
const MAX_CELLS_VISITED = 200_000;
const MAX_BYTES_READ = 64 << 20;

export class HiveError extends Error {}

export interface HiveValue {
  name: string;
  type: number;
  /** The value's data bytes when stored inline (≤ 4 bytes), else undefined. */
  inline?: Buffer;
  vkOffset: number;
}

export class Hive {
  private visited = 0;
  private bytesRead = 0;
  private readonly binsEnd: number;

  private constructor(
    private readonly fd: number,
    private readonly file: string,
    readonly fileSize: number,
    readonly rootOffset: number,
    binsSize: number,
  ) {
    this.binsEnd = BASE_BLOCK + binsSize;
  }

  /** Open and check the base block. `write` opens read-write (for setDword). */
  static open(file: string, o: { write?: boolean } = {}): Hive {
    const fd = fs.openSync(file, o.write ? "r+" : "r");
    try {
      const size = fs.fstatSync(fd).size;
      if (size < BASE_BLOCK + 4096) throw new HiveError(`${file} is too small to be a registry hive`);
      const base = Buffer.alloc(512);
      fs.readSync(fd, base, 0, 512, 0);
      if (base.toString("latin1", 0, 4) !== "regf") throw new HiveError(`${file} is not a registry hive (no regf signature)`);
      const seq1 = base.readUInt32LE(4);
      const seq2 = base.readUInt32LE(8);
      let sum = 0;
      for (let i = 0; i < 0x1fc; i += 4) sum = (sum ^ base.readUInt32LE(i)) >>> 0;
      if (sum !== base.readUInt32LE(0x1fc)) throw new HiveError(`${file}: registry hive header checksum is wrong`);
      if (seq1 !== seq2)
        throw new HiveError(`${file}: registry hive was not cleanly closed (sequence ${seq1} != ${seq2}; its log files hold newer data); shut Windows down cleanly before taking the image`);
      const root = base.readUInt32LE(0x24);
      const bins = base.readUInt32LE(0x28);
      if (bins === 0 || bins % 4096 !== 0 || BASE_BLOCK + bins > size) throw new HiveError(`${file}: registry hive bins size ${bins} does not fit the file (${size} bytes)`);
      return new Hive(fd, file, size, root, bins);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private bad(what: string): never {
    throw new HiveError(`${this.file}: corrupt registry hive (${what})`);
  }

  /** The data of the allocated cell at `off` (relative to the first hbin). */
  cell(off: number): Buffer {
    if (++this.visited > MAX_CELLS_VISITED) this.bad("too many cells visited");
    if (!Number.isInteger(off) || off < 32 || off % 8 !== 0 || BASE_BLOCK + off + 4 > this.binsEnd) this.bad(`cell offset ${off}`);
    const h = Buffer.alloc(4);
    fs.readSync(this.fd, h, 0, 4, BASE_BLOCK + off);
    const raw = h.readInt32LE(0);
    if (raw >= 0) this.bad(`cell ${off} is free`);
    const size = -raw;
    if (size < 8 || size > MAX_CELL_BYTES + 4 || BASE_BLOCK + off + size > this.binsEnd) this.bad(`cell ${off} size ${size}`);
    this.bytesRead += size;
    if (this.bytesRead > MAX_BYTES_READ) this.bad(`more than ${MAX_BYTES_READ >> 20} MiB read`);
    const data = Buffer.alloc(size - 4);
    if (fs.readSync(this.fd, data, 0, data.length, BASE_BLOCK + off + 4) !== data.length) this.bad(`short read at cell ${off}`);
    return data;
  }

  private nk(off: number): { name: string; subkeys: number; subkeyList: number; values: number; valueList: number } {
    const c = this.cell(off);
    if (c.length < 0x4c || c.toString("latin1", 0, 2) !== "nk") this.bad(`key cell ${off}`);
    const flags = c.readUInt16LE(2);
    const nameLen = c.readUInt16LE(0x48);
    if (0x4c + nameLen > c.length) this.bad(`key name at ${off}`);
    const nameBytes = c.subarray(0x4c, 0x4c + nameLen);
    const name = flags & 0x20 ? nameBytes.toString("latin1") : nameBytes.toString("utf16le");
    return { name, subkeys: c.readUInt32LE(0x14), subkeyList: c.readUInt32LE(0x1c), values: c.readUInt32LE(0x24), valueList: c.readUInt32LE(0x28) };
  }

  /** Key cell offsets of the subkeys of key `off`. */
  subkeyOffsets(off: number): number[] {
    const k = this.nk(off);
    if (k.subkeys === 0) return [];
    const out: number[] = [];
    const list = (loff: number, depth: number) => {
      const c = this.cell(loff);
      if (c.length < 4) this.bad(`subkey list ${loff}`);
      const sig = c.toString("latin1", 0, 2);
      const n = c.readUInt16LE(2);
      const step = sig === "lf" || sig === "lh" ? 8 : sig === "li" || sig === "ri" ? 4 : 0;
      if (step === 0) this.bad(`subkey list ${loff} signature`);
      if (4 + n * step > c.length) this.bad(`subkey list ${loff} count ${n}`);
      for (let i = 0; i < n; i++) {
        const e = c.readUInt32LE(4 + i * step);
        if (sig === "ri") {
          if (depth > 0) this.bad(`nested index root at ${loff}`);
          list(e, depth + 1);
        } else out.push(e);
      }
    };
    list(k.subkeyList, 0);
    if (out.length !== k.subkeys) this.bad(`key ${JSON.stringify(k.name)} says ${k.subkeys} subkeys, its lists hold ${out.length}`);
    return out;
  }

  /** The key at a backslash-separated path below the root (case-insensitive), or undefined. */
  key(pathStr: string): number | undefined {
    let cur = this.rootOffset;
    for (const part of pathStr.split("\\").filter(Boolean)) {
      const want = part.toLowerCase();
      const hit = this.subkeyOffsets(cur).find((o) => this.nk(o).name.toLowerCase() === want);
      if (hit === undefined) return undefined;
      cur = hit;
    }
    return cur;
  }

  values(keyOff: number): HiveValue[] {
    const k = this.nk(keyOff);
    if (k.values === 0) return [];
    const list = this.cell(k.valueList);
    if (k.values * 4 > list.length) this.bad(`value list of ${JSON.stringify(k.name)}`);
    const out: HiveValue[] = [];
    for (let i = 0; i < k.values; i++) {
      const vkOffset = list.readUInt32LE(i * 4);
      const c = this.cell(vkOffset);
      if (c.length < 0x14 || c.toString("latin1", 0, 2) !== "vk") this.bad(`value cell ${vkOffset}`);
      const nameLen = c.readUInt16LE(2);
      if (0x14 + nameLen > c.length) this.bad(`value name at ${vkOffset}`);
      const nameBytes = c.subarray(0x14, 0x14 + nameLen);
      const name = c.readUInt16LE(0x10) & 1 ? nameBytes.toString("latin1") : nameBytes.toString("utf16le");
      const size = c.readUInt32LE(4);
      const inlineLen = size & 0x7fffffff;
      const inline = size & 0x80000000 && inlineLen <= 4 ? Buffer.from(c.subarray(8, 8 + inlineLen)) : undefined;
      out.push({ name, type: c.readUInt32LE(0x0c), inline, vkOffset });
    }
    return out;
  }

  private dwordValue(keyPath: string, name: string): HiveValue | undefined {
    const k = this.key(keyPath);
    if (k === undefined) return undefined;
    const want = name.toLowerCase();
    return this.values(k).find((x) => x.name.toLowerCase() === want);
  }

  /** A REG_DWORD's value; undefined when key or value is missing; throws when it is not an inline DWORD. */
  getDword(keyPath: string, name: string): number | undefined {
    const v = this.dwordValue(keyPath, name);
    if (v === undefined) return undefined;
    if (v.type !== REG_DWORD || v.inline?.length !== 4) throw new HiveError(`${this.file}: ${keyPath}\\${name} is not a REG_DWORD`);
    return v.inline.readUInt32LE(0);
  }

  /** Overwrite an existing REG_DWORD in place; returns the old value. */
  setDword(keyPath: string, name: string, value: number): number {
    const v = this.dwordValue(keyPath, name);
    if (v === undefined) throw new HiveError(`${this.file}: ${keyPath}\\${name} does not exist`);
    if (v.type !== REG_DWORD || v.inline?.length !== 4) throw new HiveError(`${this.file}: ${keyPath}\\${name} is not a REG_DWORD`);
    const old = v.inline.readUInt32LE(0);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0, 0);
    // cell header (4) + vk data offset field (8)
    if (fs.writeSync(this.fd, b, 0, 4, BASE_BLOCK + v.vkOffset + 4 + 8) !== 4) throw new HiveError(`${this.file}: short write`);
    fs.fsyncSync(this.fd);
    return old;
  }
}

/** The ControlSetNNN that Select\Current names, e.g. "ControlSet001". */
export function currentControlSet(h: Hive): string {
  const n = h.getDword("Select", "Current");
  if (n === undefined) throw new HiveError("the SYSTEM hive has no Select\\Current value");
  if (n < 1 || n > 999) throw new HiveError(`the SYSTEM hive's Select\\Current is ${n}`);
  const name = `ControlSet${String(n).padStart(3, "0")}`;
  if (h.key(name) === undefined) throw new HiveError(`the SYSTEM hive has no ${name} (named by Select\\Current)`);
  return name;
}

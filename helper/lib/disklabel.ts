/**
 * The BSD disklabel that OpenBSD and NetBSD keep inside their MBR slice
 * (x86: one sector after the slice start, at offset 0). Parse, grow, write.
 *
 * Layout (sys/disklabel.h, little-endian, identical offsets on both systems
 * for what is used here): d_magic u32 @0; d_secsize @40; d_nsectors @44;
 * d_ntracks @48; d_ncylinders @52; d_secpercyl @56; d_secperunit u32 @60;
 * OpenBSD: d_bstart u32 @80, d_bend u32 @84, d_bstarth/d_bendh u16 @76/78,
 * d_secperunith u16 @112, d_version u16 @114; d_magic2 u32 @132;
 * d_checksum u16 @136 (xor of all 16-bit words of the label up to the end
 * of the last partition, taken with the checksum zero); d_npartitions u16
 * @138; partitions @148, 16 bytes each: p_size u32 @0, p_offset u32 @4,
 * OpenBSD p_offseth u16 @8 and p_sizeh u16 @10, p_fstype u8 @12.
 * Offsets and sizes are absolute disk sectors.
 *
 * The label is untrusted input: every field is bounded and every failure is
 * one line.
 */
import * as fs from "node:fs";

export const DISKMAGIC = 0x82564557;
export const LABEL_BYTES = 512;
const PART_AT = 148;
const PART_SIZE = 16;
/** OpenBSD has 16 (MAXPARTITIONS), NetBSD x86 16 (MAXPARTITIONS 16 since 5.0). */
export const MAX_PARTITIONS = 16;
export const FS_UNUSED = 0;
export const FS_BSDFFS = 7;

export type BsdFlavor = "openbsd" | "netbsd";

export interface LabelPartition {
  /** 0 = a, 1 = b, … */
  index: number;
  letter: string;
  offset: number;
  size: number;
  fstype: number;
}

export interface DiskLabel {
  flavor: BsdFlavor;
  secsize: number;
  secperunit: number;
  partitions: LabelPartition[];
  /** the raw sector as read (kept for writing back unchanged fields) */
  raw: Buffer;
}

/** Raw (whole-disk) partition index: c on OpenBSD, d on NetBSD x86. */
export const rawPartition = (flavor: BsdFlavor): number => (flavor === "openbsd" ? 2 : 3);

export function checksum(buf: Buffer, npartitions: number): number {
  const end = PART_AT + npartitions * PART_SIZE;
  let x = 0;
  for (let o = 0; o < end; o += 2) x ^= o === 136 ? 0 : buf.readUInt16LE(o);
  return x;
}

/** Parse a label sector (pure). Throws one line on anything malformed. */
export function parseLabel(sector: Buffer, flavor: BsdFlavor): DiskLabel {
  if (sector.length < LABEL_BYTES) throw new Error("BSD disklabel: short read");
  const buf = Buffer.from(sector.subarray(0, LABEL_BYTES));
  if (buf.readUInt32LE(0) !== DISKMAGIC || buf.readUInt32LE(132) !== DISKMAGIC) throw new Error("no BSD disklabel in the slice (bad magic)");
  const npart = buf.readUInt16LE(138);
  if (npart < 1 || npart > MAX_PARTITIONS) throw new Error(`BSD disklabel: bad partition count ${npart}`);
  if (checksum(buf, npart) !== buf.readUInt16LE(136)) throw new Error("BSD disklabel: bad checksum");
  const secsize = buf.readUInt32LE(40);
  if (secsize !== 512) throw new Error(`BSD disklabel: sector size ${secsize} is not supported`);
  const openbsd = flavor === "openbsd";
  const secperunit = buf.readUInt32LE(60) + (openbsd ? buf.readUInt16LE(112) * 2 ** 32 : 0);
  const partitions: LabelPartition[] = [];
  for (let i = 0; i < npart; i++) {
    const at = PART_AT + i * PART_SIZE;
    const size = buf.readUInt32LE(at) + (openbsd ? buf.readUInt16LE(at + 10) * 2 ** 32 : 0);
    const offset = buf.readUInt32LE(at + 4) + (openbsd ? buf.readUInt16LE(at + 8) * 2 ** 32 : 0);
    partitions.push({ index: i, letter: String.fromCharCode(97 + i), offset, size, fstype: buf[at + 12]! });
  }
  return { flavor, secsize, secperunit, partitions, raw: buf };
}

/** Serialize a (possibly changed) label back into its sector, checksum included (pure). */
export function serializeLabel(l: DiskLabel): Buffer {
  const buf = Buffer.from(l.raw);
  const openbsd = l.flavor === "openbsd";
  const put48 = (lowAt: number, highAt: number | undefined, v: number) => {
    if (!Number.isSafeInteger(v) || v < 0 || v >= (highAt === undefined ? 2 ** 32 : 2 ** 48)) throw new Error(`BSD disklabel: value ${v} does not fit`);
    buf.writeUInt32LE(v % 2 ** 32, lowAt);
    if (highAt !== undefined) buf.writeUInt16LE(Math.floor(v / 2 ** 32), highAt);
  };
  put48(60, openbsd ? 112 : undefined, l.secperunit);
  for (const p of l.partitions) {
    const at = PART_AT + p.index * PART_SIZE;
    put48(at, openbsd ? at + 10 : undefined, p.size);
    put48(at + 4, openbsd ? at + 8 : undefined, p.offset);
  }
  buf.writeUInt16LE(checksum(buf, buf.readUInt16LE(138)), 136);
  return buf;
}

/** Partitions that hold data: not the whole-disk one, not NetBSD's slice partition c, not unused. */
function dataPartitions(l: DiskLabel): LabelPartition[] {
  const special = new Set<number>([rawPartition(l.flavor), ...(l.flavor === "netbsd" ? [2] : [])]);
  return l.partitions.filter((p) => !special.has(p.index) && p.fstype !== FS_UNUSED && p.size > 0);
}

/** The data partition that ends last (the one growLabel grows). */
export function lastDataPartition(l: DiskLabel): LabelPartition | undefined {
  return dataPartitions(l).reduce<LabelPartition | undefined>((a, b) => (!a || b.offset + b.size > a.offset + a.size ? b : a), undefined);
}

export interface LabelGrowth {
  label: DiskLabel;
  /** the partition that grew (undefined: nothing to grow) */
  grown?: LabelPartition;
  oldSize?: number;
}

/**
 * Grow the label to a slice that now spans [sliceStart, sliceStart+sliceSize)
 * on a disk of diskSectors: the whole-disk partition and d_secperunit follow
 * the disk, NetBSD's slice partition (c) and OpenBSD's usable area follow the
 * slice, and the partition that ends last inside the slice grows to its end.
 */
export function growLabel(l: DiskLabel, sliceStart: number, sliceSize: number, diskSectors: number): LabelGrowth {
  const sliceEnd = sliceStart + sliceSize;
  const raw = rawPartition(l.flavor);
  const out: DiskLabel = { ...l, partitions: l.partitions.map((p) => ({ ...p })), raw: Buffer.from(l.raw) };
  out.secperunit = diskSectors;
  const rawP = out.partitions[raw];
  if (rawP && rawP.offset === 0) rawP.size = diskSectors;
  if (l.flavor === "netbsd") {
    const c = out.partitions[2];
    if (c && c.fstype === FS_UNUSED && c.offset === sliceStart) c.size = sliceSize;
  } else {
    // OpenBSD's usable area: d_bstart/d_bend (48-bit)
    const bstart = out.raw.readUInt32LE(80) + out.raw.readUInt16LE(76) * 2 ** 32;
    if (bstart < sliceStart || bstart > sliceEnd) throw new Error(`BSD disklabel: usable area starts at ${bstart}, outside the slice`);
    out.raw.writeUInt32LE(sliceEnd % 2 ** 32, 84);
    out.raw.writeUInt16LE(Math.floor(sliceEnd / 2 ** 32), 78);
  }
  for (const p of dataPartitions(out)) {
    if (p.offset < sliceStart || p.offset + p.size > sliceEnd) throw new Error(`BSD disklabel: partition ${p.letter} lies outside the slice`);
  }
  const last = lastDataPartition(out);
  if (!last || last.offset + last.size >= sliceEnd) return { label: out };
  const oldSize = last.size;
  last.size = sliceEnd - last.offset;
  return { label: out, grown: last, oldSize };
}

/** Read the label of the slice starting at sector sliceStart of dev (bounded: one sector). */
export function readLabel(dev: string, sliceStart: number, flavor: BsdFlavor): DiskLabel {
  const fd = fs.openSync(dev, "r");
  try {
    const buf = Buffer.alloc(LABEL_BYTES);
    const n = fs.readSync(fd, buf, 0, LABEL_BYTES, (sliceStart + 1) * 512);
    return parseLabel(buf.subarray(0, n), flavor);
  } finally {
    fs.closeSync(fd);
  }
}

export function writeLabel(dev: string, sliceStart: number, l: DiskLabel): void {
  const buf = serializeLabel(l);
  const fd = fs.openSync(dev, "r+");
  try {
    if (fs.writeSync(fd, buf, 0, buf.length, (sliceStart + 1) * 512) !== buf.length) throw new Error("BSD disklabel: short write");
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

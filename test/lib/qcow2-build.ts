/**
 * A small qcow2 writer for tests, written from QEMU's docs/interop/qcow2.txt:
 * header (v2 or v3), L1, refcount table + block, L2 tables, data clusters,
 * and compressed clusters packed byte by byte after them (zlib raw deflate
 * or one zstd frame each). It returns the layout so that tests can corrupt a
 * chosen field. Not part of the product: the product only reads qcow2.
 */
import zlib from "node:zlib";

export type GuestCluster =
  | { kind: "data"; bytes: Uint8Array }
  /** v3: the zero flag (with no host cluster); v2 has no zero flag: left unallocated. */
  | { kind: "zero" }
  | { kind: "comp"; bytes: Uint8Array };

export interface BuildSpec {
  version?: 2 | 3;
  clusterBits?: number;
  virtualSize: number;
  /** By guest cluster index; missing = unallocated. */
  clusters: Map<number, GuestCluster>;
  compression?: "zlib" | "zstd";
  /** Extra incompatible feature bits to set (v3). */
  incompatible?: number;
}

export interface Built {
  file: Uint8Array;
  clusterSize: number;
  l1Offset: number;
  l1Size: number;
  refcountTableOffset: number;
  /** Host offset of each L2 table by L1 index. */
  l2: Map<number, number>;
  /** Host offset of each data cluster by guest index. */
  data: Map<number, number>;
  /** Offset of each L2 entry in the file by guest index. */
  l2Entry: Map<number, number>;
  /** The raw disk the image describes. */
  raw: Uint8Array;
}

export function buildQcow2(s: BuildSpec): Built {
  const version = s.version ?? 3;
  const cb = s.clusterBits ?? 12;
  const cs = 2 ** cb;
  const l2Entries = cs / 8;
  const guestClusters = Math.ceil(s.virtualSize / cs);
  const l1Size = Math.max(1, Math.ceil(guestClusters / l2Entries));
  const zstd = (s.compression ?? "zlib") === "zstd";
  const raw = new Uint8Array(s.virtualSize);

  // Layout: 0 header, 1.. L1, then refcount table, refcount block, L2 tables, data, compressed.
  let next = cs;
  const l1Offset = next;
  next += Math.ceil((l1Size * 8) / cs) * cs;
  const refcountTableOffset = next;
  next += cs;
  const refcountBlock = next;
  next += cs;
  const l2 = new Map<number, number>();
  for (const g of [...s.clusters.keys()].sort((a, b) => a - b)) {
    const i = Math.floor(g / l2Entries);
    if (!l2.has(i) && !(version === 2 && s.clusters.get(g)!.kind === "zero")) {
      l2.set(i, next);
      next += cs;
    }
  }
  const data = new Map<number, number>();
  for (const [g, c] of [...s.clusters].sort((a, b) => a[0] - b[0])) {
    if (c.kind !== "data") continue;
    data.set(g, next);
    next += cs;
  }
  const comp: { g: number; off: number; bytes: Uint8Array }[] = [];
  let cpos = next;
  for (const [g, c] of [...s.clusters].sort((a, b) => a[0] - b[0])) {
    if (c.kind !== "comp") continue;
    const full = new Uint8Array(cs);
    full.set(c.bytes.subarray(0, cs));
    const bytes = zstd ? Bun.zstdCompressSync(full) : zlib.deflateRawSync(full);
    comp.push({ g, off: cpos, bytes });
    cpos += bytes.length;
  }
  const fileSize = comp.length ? Math.ceil(cpos / 512) * 512 : next;
  const file = new Uint8Array(fileSize);
  const dv = new DataView(file.buffer);
  const u64 = (o: number, v: number | bigint) => dv.setBigUint64(o, BigInt(v));

  // Header.
  file.set([0x51, 0x46, 0x49, 0xfb]);
  dv.setUint32(4, version);
  dv.setUint32(20, cb);
  u64(24, s.virtualSize);
  dv.setUint32(36, l1Size);
  u64(40, l1Offset);
  u64(48, refcountTableOffset);
  dv.setUint32(56, 1);
  if (version === 3) {
    u64(72, (zstd ? 8 : 0) | (s.incompatible ?? 0));
    dv.setUint32(96, 4);
    dv.setUint32(100, zstd ? 112 : 104);
    if (zstd) file[104] = 1;
  }
  // Refcounts (16-bit): every used cluster once.
  u64(refcountTableOffset, refcountBlock);
  const refs = new Map<number, number>();
  const ref = (off: number, len: number) => {
    for (let c = Math.floor(off / cs); c < Math.ceil((off + len) / cs); c++) refs.set(c, (refs.get(c) ?? 0) + 1);
  };
  ref(0, next);
  for (const c of comp) ref(c.off, c.bytes.length);
  for (const [c, n] of refs) if (c < cs / 2) dv.setUint16(refcountBlock + c * 2, n);

  const l2Entry = new Map<number, number>();
  for (const [i, off] of l2) u64(l1Offset + i * 8, BigInt(off) | (1n << 63n));
  const entryAt = (g: number) => {
    const t = l2.get(Math.floor(g / l2Entries))!;
    const at = t + (g % l2Entries) * 8;
    l2Entry.set(g, at);
    return at;
  };
  for (const [g, c] of s.clusters) {
    const gOff = g * cs;
    const len = Math.min(cs, s.virtualSize - gOff);
    if (c.kind === "data") {
      const host = data.get(g)!;
      file.set(c.bytes.subarray(0, cs), host);
      raw.set(c.bytes.subarray(0, len), gOff);
      u64(entryAt(g), BigInt(host) | (1n << 63n));
    } else if (c.kind === "zero") {
      if (version === 3) u64(entryAt(g), 1n);
    } else {
      raw.set(c.bytes.subarray(0, len), gOff);
    }
  }
  const shift = 62 - (cb - 8);
  for (const c of comp) {
    file.set(c.bytes, c.off);
    const extra = Math.floor((c.off + c.bytes.length - 1) / 512) - Math.floor(c.off / 512);
    u64(entryAt(c.g), (1n << 62n) | (BigInt(extra) << BigInt(shift)) | BigInt(c.off));
  }
  return { file, clusterSize: cs, l1Offset, l1Size, refcountTableOffset, l2, data, l2Entry, raw };
}

/**
 * qcow2 images (QEMU's format, docs/interop/qcow2.txt), converted on the
 * host into the raw disk stream the writer takes: data as bytes, zero and
 * unallocated clusters as ZeroRun lengths (never as zero bytes), compressed
 * clusters inflated one cluster at a time (zlib/deflate, or zstd when the
 * header says so). The result equals `qemu-img convert -O raw`.
 *
 * The file is hostile input, read through positional reads (a local fd or
 * http Range requests):
 *   - refused: a backing file (its name could point at any file on the node),
 *     an external data file, encryption, the corrupt bit, incompatible feature
 *     bits this code does not know, versions other than 2 and 3;
 *   - bounded: cluster_bits 9..21, header and extensions inside the first
 *     cluster, L1 at most 32 MiB and inside the file, only the L1 entries the
 *     virtual size needs are read, every table and data cluster inside the
 *     file, and every host cluster is used once: as header, L1, refcount
 *     table, L2 table, data or compressed data — two uses (overlapping tables,
 *     a cluster mapped twice) are refused. So no byte of the file is read
 *     twice (compressed clusters may share one 512-byte sector) and the bytes
 *     read never exceed the file size.
 * The dirty bit is accepted: it only says the refcounts may be stale, and
 * reading never looks at refcounts.
 *
 * Every failure is one SnfError line that names the image, never a string
 * from the file.
 */
import zlib from "node:zlib";
import { SnfError, errorMessage, causeOf } from "../errors.ts";
import { ZeroRun, type ImageChunk } from "../disk/input.ts";
import type { RangeReader } from "./sources/kind.ts";

export const QCOW2_MAGIC = [0x51, 0x46, 0x49, 0xfb]; // "QFI\xfb"

export function isQcow2(head: Uint8Array): boolean {
  return head.length >= 4 && QCOW2_MAGIC.every((b, i) => head[i] === b);
}

const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21; // 2 MiB, qemu's limit
/** qemu's limit on the L1 table. */
const MAX_L1_BYTES = 32 * 1024 * 1024;
/** qemu's limit on the refcount table. */
const MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024;
/** One byte of bookkeeping per host cluster; beyond this the file has too many. */
const MAX_HOST_CLUSTERS = 64 * 1024 * 1024;
/** Largest single read (adjacent clusters are read together up to this). */
const MAX_READ = 4 * 1024 * 1024;
/** Bytes read ahead of the writer. */
const READ_AHEAD = 16 * 1024 * 1024;
/** The smallest cluster: the first read never reaches past the header cluster. */
const FIRST_READ = 512;

const EXT_END = 0x00000000;
const EXT_FDE = 0x0537be77;
const EXT_DATA_FILE = 0x44415441;

const INCOMPAT_DIRTY = 1;
const INCOMPAT_CORRUPT = 2;
const INCOMPAT_DATA_FILE = 4;
const INCOMPAT_COMPRESSION = 8;
const INCOMPAT_EXTL2 = 16;
const INCOMPAT_KNOWN = 31;

export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterSize: number;
  virtualSize: number;
  l1Size: number;
  l1Offset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  headerLength: number;
  dirty: boolean;
  compression: "zlib" | "zstd";
  extendedL2: boolean;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/**
 * Parses and checks the header and its extensions. `buf` holds the first
 * cluster (the whole file when that is shorter). Pure.
 */
export function parseHeader(buf: Uint8Array, fileSize: number, name: string): Qcow2Header {
  const bad = (why: string) => new SnfError(`qcow2 image ${name}: ${why}`);
  if (buf.length < 72 || !isQcow2(buf)) throw bad("not a qcow2 file (too short or no QFI\\xfb magic)");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const u32 = (o: number) => dv.getUint32(o);
  const u64 = (o: number, what: string) => {
    const x = dv.getBigUint64(o);
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${x} is out of range`);
    return Number(x);
  };
  const version = u32(4);
  if (version !== 2 && version !== 3) throw bad(`version ${version} is not supported (only 2 and 3)`);
  const backingOffset = dv.getBigUint64(8);
  if (backingOffset !== 0n) throw bad("it has a backing file (refused: a backing file name can point at any file on the node; flatten it with qemu-img convert)");
  const clusterBits = u32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) throw bad(`cluster_bits ${clusterBits} is outside ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}`);
  const clusterSize = 2 ** clusterBits;
  // qemu sees whole 512-byte sectors only (the tail of an odd size is not part of its raw conversion).
  const virtualSize = Math.floor(u64(24, "virtual size") / 512) * 512;
  const crypt = u32(32);
  if (crypt !== 0) throw bad(`it is encrypted (crypt_method ${crypt}; refused)`);
  const l1Size = u32(36);
  const l1Offset = u64(40, "L1 table offset");
  const refcountTableOffset = u64(48, "refcount table offset");
  const refcountTableClusters = u32(56);

  let headerLength = 72;
  let incompatible = 0;
  let compression: Qcow2Header["compression"] = "zlib";
  if (version === 3) {
    if (buf.length < 104) throw bad("version 3 header is truncated");
    const incHi = u32(72);
    incompatible = u32(76);
    if (incHi !== 0 || incompatible & ~INCOMPAT_KNOWN) {
      const bits: number[] = [];
      for (let b = 0; b < 32; b++) if ((incompatible >>> b) & 1 && !((INCOMPAT_KNOWN >>> b) & 1)) bits.push(b);
      for (let b = 0; b < 32; b++) if ((incHi >>> b) & 1) bits.push(b + 32);
      throw bad(`unknown incompatible feature bit(s) ${bits.join(", ")} (refused)`);
    }
    if (incompatible & INCOMPAT_CORRUPT) throw bad("it is marked corrupt (run qemu-img check -r all on it first)");
    if (incompatible & INCOMPAT_DATA_FILE) throw bad("it uses an external data file (refused)");
    const refcountOrder = u32(96);
    if (refcountOrder > 6) throw bad(`refcount_order ${refcountOrder} is larger than 6`);
    headerLength = u32(100);
    if (headerLength < 104 || headerLength % 8 !== 0 || headerLength > Math.min(clusterSize, buf.length)) {
      throw bad(`header_length ${headerLength} is invalid`);
    }
    const ctype = headerLength > 104 ? buf[104]! : 0;
    if (incompatible & INCOMPAT_COMPRESSION) {
      if (ctype === 0) throw bad("compression type bit set without a compression type");
      if (ctype !== 1) throw bad(`compression type ${ctype} is not supported (zlib or zstd)`);
      compression = "zstd";
    } else if (ctype !== 0) throw bad(`compression type ${ctype} given without its feature bit`);
    if (incompatible & INCOMPAT_EXTL2 && clusterBits < 14) throw bad(`extended L2 entries need cluster_bits ≥ 14, not ${clusterBits}`);
  }

  // Header extensions: inside the first cluster (and the bytes we hold).
  const end = Math.min(clusterSize, fileSize, buf.length);
  let o = headerLength;
  for (;;) {
    if (o + 8 > end) {
      if (end < Math.min(clusterSize, fileSize)) throw bad("header extensions need more than the first read"); // caller reads the whole cluster
      break; // qemu too stops at the end of the cluster
    }
    const type = u32(o);
    const len = u32(o + 4);
    if (type === EXT_END) break;
    const next = o + 8 + Math.ceil(len / 8) * 8;
    if (next > Math.min(clusterSize, fileSize)) throw bad(`header extension ${hex(type)} runs past the first cluster`);
    if (next > end) throw bad("header extensions need more than the first read");
    if (type === EXT_FDE) throw bad("it carries an encryption header (refused)");
    if (type === EXT_DATA_FILE) throw bad("it names an external data file (refused)");
    o = next;
  }

  // Tables: aligned, sized and inside the file.
  const inFile = (off: number, len: number) => off + len <= fileSize;
  const l2Entries = clusterSize / (incompatible & INCOMPAT_EXTL2 ? 16 : 8);
  const needed = Math.ceil(virtualSize / (clusterSize * l2Entries));
  if (l1Size * 8 > MAX_L1_BYTES) throw bad(`L1 table of ${l1Size} entries is larger than 32 MiB`);
  if (l1Size < needed) throw bad(`L1 table of ${l1Size} entries is too small for the virtual size ${virtualSize}`);
  if (l1Size > 0) {
    if (l1Offset === 0 || l1Offset % clusterSize !== 0) throw bad(`L1 table offset ${hex(l1Offset)} is not cluster-aligned`);
    if (!inFile(l1Offset, l1Size * 8)) throw bad(`L1 table (${hex(l1Offset)}, ${l1Size} entries) lies past the end of the ${fileSize}-byte file`);
  }
  if (refcountTableOffset % clusterSize !== 0) throw bad(`refcount table offset ${hex(refcountTableOffset)} is not cluster-aligned`);
  if (refcountTableClusters * clusterSize > MAX_REFCOUNT_TABLE_BYTES) throw bad(`refcount table of ${refcountTableClusters} clusters is larger than 8 MiB`);
  if (refcountTableOffset !== 0 && !inFile(refcountTableOffset, refcountTableClusters * clusterSize)) {
    throw bad(`refcount table (${hex(refcountTableOffset)}) lies past the end of the file`);
  }
  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    l1Size,
    l1Offset,
    refcountTableOffset,
    refcountTableClusters,
    headerLength,
    dirty: !!(incompatible & INCOMPAT_DIRTY),
    compression,
    extendedL2: !!(incompatible & INCOMPAT_EXTL2),
  };
}

/**
 * How each host cluster is used (one byte each). Two uses of one cluster are
 * refused, except compressed clusters sharing a cluster among themselves.
 */
const FREE = 0;
const META = 1;
const DATA = 2;
const COMPRESSED = 3;

/**
 * The length of the one zstd frame at the start of `b` (qemu writes one frame
 * a cluster; what follows it in the sector is not ours). Also bounds what the
 * frame can produce to `maxOut` (+ one 128 KiB block), so that no frame can
 * make the decompressor allocate more: the declared content size, raw and RLE
 * block sizes, and 128 KiB for each compressed block.
 */
export function zstdFrameLength(b: Uint8Array, maxOut: number): number {
  const bad = (why: string) => new Error(`zstd frame: ${why}`);
  if (b.length < 6 || b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) throw bad("no magic");
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  let o = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  const fcsBytes = [single, 2, 4, 8][fcsFlag]!;
  if (o + fcsBytes > b.length) throw bad("truncated header");
  let fcs = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + b[o + i]!;
  if (fcsBytes === 2) fcs += 256;
  if (fcs > maxOut) throw bad(`declares ${fcs} bytes`);
  o += fcsBytes;
  const BLOCK_MAX = 128 * 1024;
  let bound = 0;
  for (;;) {
    if (o + 3 > b.length) throw bad("truncated");
    const h = b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    if (type === 3) throw bad("reserved block type");
    bound += type === 2 ? BLOCK_MAX : size;
    if (bound > maxOut + BLOCK_MAX) throw bad(`produces more than ${maxOut} bytes`);
    o += 3 + (type === 1 ? 1 : size);
    if (o > b.length) throw bad("truncated");
    if (h & 1) break;
  }
  o += checksum ? 4 : 0;
  if (o > b.length) throw bad("truncated");
  return o;
}

type Item =
  | { k: "zero"; len: number }
  | { k: "data"; host: number; len: number }
  | { k: "comp"; host: number; csize: number; len: number };

interface Group {
  kind: "zero" | "data" | "comp";
  /** Guest bytes this group produces. */
  len: number;
  /** File range read (data, comp). */
  start: number;
  end: number;
  items: Item[];
}

export interface Qcow2Stream {
  header: Qcow2Header;
  /** The raw disk: virtualSize bytes as data chunks and ZeroRuns. */
  stream: ReadableStream<ImageChunk>;
}

/**
 * Reads and checks the header and the L1 table, then returns the stream of
 * the raw disk. L2 tables are read as the stream gets to them. The stream
 * closes `reader` at its end, on error and on cancel.
 */
export async function openQcow2(reader: RangeReader, name: string): Promise<Qcow2Stream> {
  const bad = (why: string) => new SnfError(`qcow2 image ${name}: ${why}`);
  const fileSize = reader.size;
  let header: Qcow2Header;
  let l1: DataView;
  let use: Uint8Array;
  try {
    let head = await reader.read(0, Math.min(FIRST_READ, fileSize));
    const clusterBits = head.length >= 24 && isQcow2(head) ? new DataView(head.buffer, head.byteOffset).getUint32(20) : 0;
    const first = clusterBits >= MIN_CLUSTER_BITS && clusterBits <= MAX_CLUSTER_BITS ? Math.min(2 ** clusterBits, fileSize) : 0;
    if (first > head.length) {
      // The rest of the first cluster (extensions may reach its end).
      const rest = await reader.read(head.length, first - head.length);
      const all = new Uint8Array(first);
      all.set(head);
      all.set(rest, head.length);
      head = all;
    }
    header = parseHeader(head, fileSize, name);
    const cs = header.clusterSize;
    const hostClusters = Math.ceil(fileSize / cs);
    if (hostClusters > MAX_HOST_CLUSTERS) throw bad(`${hostClusters} clusters of ${cs} bytes are too many to check`);
    use = new Uint8Array(hostClusters);
    const mark = (off: number, len: number, what: string) => {
      for (let c = Math.floor(off / cs); c < Math.ceil((off + len) / cs); c++) {
        if (use[c] !== FREE) throw bad(`${what} at ${hex(off)} overlaps other metadata`);
        use[c] = META;
      }
    };
    mark(0, Math.min(cs, fileSize), "header");
    if (header.l1Size) mark(header.l1Offset, header.l1Size * 8, "L1 table");
    if (header.refcountTableOffset) mark(header.refcountTableOffset, header.refcountTableClusters * cs, "refcount table");
    const l2Entries = cs / (header.extendedL2 ? 16 : 8);
    const needed = Math.ceil(header.virtualSize / (cs * l2Entries));
    const l1Bytes = needed ? await reader.read(header.l1Offset, needed * 8) : new Uint8Array(0);
    l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength);
    for (let i = 0; i < needed; i++) {
      const off = l2Offset(l1, i, bad);
      if (off === 0) continue;
      if (off % cs !== 0) throw bad(`L2 table offset ${hex(off)} (L1 entry ${i}) is not cluster-aligned`);
      if (off + cs > fileSize) throw bad(`L2 table at ${hex(off)} (L1 entry ${i}) lies past the end of the ${fileSize}-byte file`);
      mark(off, cs, `L2 table (L1 entry ${i})`);
    }
  } catch (e) {
    await reader.close();
    throw e instanceof SnfError ? e : bad(errorMessage(e));
  }
  const stream = rawStream(reader, header, l1, use, bad);
  return { header, stream };
}

function l2Offset(l1: DataView, i: number, bad: (w: string) => SnfError): number {
  const hi = l1.getUint32(i * 8);
  const lo = l1.getUint32(i * 8 + 4);
  // Bits 9..55; bit 63 (copied) and the reserved bits are ignored as by qemu.
  const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
  if (off > Number.MAX_SAFE_INTEGER) throw bad(`L1 entry ${i} is out of range`);
  return off;
}

/** The guest disk in order, as groups of reads; L2 tables read on the way. */
async function* plan(reader: RangeReader, h: Qcow2Header, l1: DataView, use: Uint8Array, bad: (w: string) => SnfError): AsyncGenerator<Group> {
  const cs = h.clusterSize;
  const fileSize = reader.size;
  const sectorEnd = Math.ceil(fileSize / 512) * 512;
  const entryBytes = h.extendedL2 ? 16 : 8;
  const l2Entries = cs / entryBytes;
  const cover = cs * l2Entries;
  const needed = l1.byteLength / 8;
  const csizeShift = 62 - (h.clusterBits - 8);
  const offMask = (1n << BigInt(csizeShift)) - 1n;
  const csizeMask = (1n << BigInt(h.clusterBits - 8)) - 1n;
  const sub = cs / 32;

  let g: Group | null = null;
  const out: Group[] = [];
  const add = (it: Item) => {
    if (g) {
      if (it.k === "zero" && g.kind === "zero") {
        g.len += it.len;
        return;
      }
      if (it.k === "data" && g.kind === "data" && it.host === g.end && g.end - g.start + it.len <= MAX_READ && g.end + it.len <= fileSize) {
        g.items.push(it);
        g.len += it.len;
        g.end += it.len;
        return;
      }
      if (it.k === "comp" && g.kind === "comp" && it.host >= (g.items[g.items.length - 1] as { host: number }).host && it.host <= g.end) {
        const end = Math.min(it.host + it.csize, fileSize);
        if (Math.max(g.end, end) - g.start <= MAX_READ && g.len + it.len <= MAX_READ) {
          g.items.push(it);
          g.len += it.len;
          g.end = Math.max(g.end, end);
          return;
        }
      }
      out.push(g);
    }
    if (it.k === "zero") g = { kind: "zero", len: it.len, start: 0, end: 0, items: [] };
    else if (it.k === "data") g = { kind: "data", len: it.len, start: it.host, end: Math.min(it.host + it.len, fileSize), items: [it] };
    else g = { kind: "comp", len: it.len, start: it.host, end: Math.min(it.host + it.csize, fileSize), items: [it] };
  };
  const useData = (host: number, guest: number) => {
    if (host % cs !== 0) throw bad(`data cluster offset ${hex(host)} (guest ${hex(guest)}) is not cluster-aligned`);
    if (host >= fileSize) throw bad(`data cluster at ${hex(host)} (guest ${hex(guest)}) lies past the end of the ${fileSize}-byte file`);
    const c = host / cs;
    if (use[c] !== FREE) throw bad(`data cluster at ${hex(host)} (guest ${hex(guest)}) overlaps metadata or another cluster`);
    use[c] = DATA;
  };

  for (let i = 0; i < needed; i++) {
    const base = i * cover;
    const span = Math.min(cover, h.virtualSize - base);
    const off = l2Offset(l1, i, bad);
    if (off === 0) {
      add({ k: "zero", len: span });
    } else {
      const t = await reader.read(off, cs);
      const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
      const n = Math.ceil(span / cs);
      for (let j = 0; j < n; j++) {
        const guest = base + j * cs;
        const len = Math.min(cs, h.virtualSize - guest);
        const hi = dv.getUint32(j * entryBytes);
        const lo = dv.getUint32(j * entryBytes + 4);
        if (hi & 0x40000000) {
          // Compressed: offset in the low bits, then the count of extra 512-byte sectors.
          const e = (BigInt(hi) << 32n) | BigInt(lo);
          const host = Number(e & offMask);
          const csize = (Number((e >> BigInt(csizeShift)) & csizeMask) + 1) * 512 - (host % 512);
          if (host < cs || host >= fileSize || host + csize > sectorEnd) {
            throw bad(`compressed cluster at ${hex(host)} (${csize} bytes, guest ${hex(guest)}) lies outside the ${fileSize}-byte file`);
          }
          for (let c = Math.floor(host / cs); c < Math.ceil(Math.min(host + csize, fileSize) / cs); c++) {
            if (use[c] !== FREE && use[c] !== COMPRESSED) throw bad(`compressed cluster at ${hex(host)} (guest ${hex(guest)}) overlaps metadata or another cluster`);
            use[c] = COMPRESSED;
          }
          add({ k: "comp", host, csize, len });
          continue;
        }
        const host = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
        if (!h.extendedL2) {
          if (lo & 1 || host === 0) add({ k: "zero", len }); // zero flag, or unallocated (no backing file)
          else {
            useData(host, guest);
            add({ k: "data", host, len });
          }
          continue;
        }
        const alloc = dv.getUint32(j * entryBytes + 12);
        const zero = dv.getUint32(j * entryBytes + 8);
        if (alloc & zero) throw bad(`L2 entry for guest ${hex(guest)} has subclusters both allocated and zero`);
        if (host === 0) {
          if (alloc) throw bad(`L2 entry for guest ${hex(guest)} has allocated subclusters but no cluster`);
          add({ k: "zero", len });
          continue;
        }
        if (alloc) useData(host, guest);
        for (let s = 0; s < 32 && s * sub < len; s++) {
          const slen = Math.min(sub, len - s * sub);
          if ((alloc >>> s) & 1) add({ k: "data", host: host + s * sub, len: slen });
          else add({ k: "zero", len: slen });
        }
      }
    }
    while (out.length) yield out.shift()!;
  }
  if (g) out.push(g);
  while (out.length) yield out.shift()!;
}

/**
 * Runs the plan with reads in flight ahead of the consumer; compressed
 * clusters are inflated as soon as their read completes.
 */
function rawStream(reader: RangeReader, h: Qcow2Header, l1: DataView, use: Uint8Array, bad: (w: string) => SnfError): ReadableStream<ImageChunk> {
  const groups = plan(reader, h, l1, use, bad);
  const queue: { g: Group; cost: number; out: Promise<ImageChunk[]> }[] = [];
  let ahead = 0;
  let planDone = false;
  let produced = 0;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await groups.return(undefined).catch(() => {});
    // The reader ends its reads in flight (http aborts them; a file waits for them before closing).
    await reader.close();
    await Promise.allSettled(queue.splice(0).map((q) => q.out));
  };
  // Synchronous: per 64 KiB cluster the thread pool's hand-off costs more than it saves (measured).
  const inflate = (it: Extract<Item, { k: "comp" }>, src: Uint8Array): Uint8Array => {
    let cluster: Uint8Array;
    try {
      cluster =
        h.compression === "zlib"
          ? zlib.inflateRawSync(src, { maxOutputLength: h.clusterSize, finishFlush: zlib.constants.Z_SYNC_FLUSH })
          : Bun.zstdDecompressSync(src.subarray(0, zstdFrameLength(src, h.clusterSize)));
    } catch (e) {
      throw bad(`compressed cluster at ${hex(it.host)} does not decompress (${causeOf(e)})`);
    }
    if (cluster.length < it.len) throw bad(`compressed cluster at ${hex(it.host)} decompresses to ${cluster.length} bytes, not ${h.clusterSize}`);
    return cluster.length === it.len ? cluster : cluster.subarray(0, it.len);
  };
  const start = (g: Group): Promise<ImageChunk[]> => {
    if (g.kind === "zero") return Promise.resolve([new ZeroRun(g.len)]);
    const read = reader.read(g.start, g.end - g.start);
    if (g.kind === "data") {
      // A last cluster that the file ends inside reads as zeros past the end (as in qemu).
      const got = g.end - g.start;
      return read.then((b) => (got < g.len ? [b, new ZeroRun(g.len - got)] : [b]));
    }
    return read.then((buf) =>
      (g.items as Extract<Item, { k: "comp" }>[]).map((it) => {
        const s = it.host - g.start;
        return inflate(it, buf.subarray(s, Math.min(s + it.csize, buf.length)));
      }),
    );
  };
  const fill = async () => {
    while (!planDone && (queue.length === 0 || ahead < READ_AHEAD)) {
      const r = await groups.next();
      if (r.done) {
        planDone = true;
        break;
      }
      const g = r.value;
      const out = start(g);
      out.catch(() => {});
      // Compressed groups hold their output too.
      const cost = g.kind === "comp" ? g.end - g.start + g.len : g.end - g.start;
      queue.push({ g, cost, out });
      ahead += cost;
    }
  };
  return new ReadableStream<ImageChunk>(
    {
      async pull(c) {
        try {
          await fill();
          const q = queue.shift();
          if (!q) {
            if (produced !== h.virtualSize) throw bad(`the tables describe ${produced} of ${h.virtualSize} bytes`);
            await close();
            c.close();
            return;
          }
          const chunks = await q.out;
          ahead -= q.cost;
          produced += q.g.len;
          for (const b of chunks) c.enqueue(b);
        } catch (e) {
          await close();
          c.error(e instanceof SnfError ? e : bad(errorMessage(e)));
        }
      },
      async cancel() {
        await close();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The zero-aware disk writer: the hot path of `create` and `import`.
 *
 * The stream is cut into 4 MiB chunks in page-aligned buffers (outside the JS
 * heap). When the stream is an unread local file (see ./input.ts) the file is
 * read with positional reads straight into those buffers instead, the read
 * of one chunk overlapping the writes of the previous ones: no per-chunk
 * allocation, no copy, no GC pressure; and only its data is read: its holes
 * (lseek SEEK_DATA/SEEK_HOLE, ./extents.ts) are zeros by length. Each chunk is classified 4 KiB block
 * by block (libc memcmp against a zero buffer): data runs are written with O_DIRECT pwrite on Bun's thread
 * pool while the next chunk is being read (three buffers rotate), zero runs
 * are not written at all but zeroed by the storage: fallocate(PUNCH_HOLE|
 * KEEP_SIZE), then ZERO_RANGE on files and BLKZEROOUT on block devices, plain
 * writes of a zero buffer when none works. The result is byte-identical to
 * `dd if=IMG of=DISK conv=notrunc` whatever the disk held before. A stream may
 * also carry ZeroRun items (./input.ts): zeros given by length, zeroed the
 * same way without ever being bytes in memory. A tail that
 * is not 4 KiB aligned is written through a second, buffered descriptor. The
 * disk is fdatasync'ed before writeImage returns.
 *
 * Shape: ChunkWriter owns the write side (descriptors, buffers, pending
 * writes, zeroing, counters); a feeder fills its buffers — feedFile (the
 * pread fast path) or feedStream (bytes and ZeroRun items); writeImage opens,
 * writes the prefix, picks the feeder and finishes.
 */
import fs from "node:fs";
import { SnfError, errorMessage, errnoOf, causeOf } from "../errors.ts";
import { onCleanup } from "../cleanup.ts";
import { log } from "../log.ts";
import { openTarget, type Target } from "./target.ts";
import { fileBacking, ZeroRun, type FileBacking, type ImageChunk } from "./input.ts";
import { FileExtents } from "./extents.ts";
import {
  allocAligned,
  blkZeroOut,
  fallocate,
  isZero,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  O_CLOEXEC,
  type AlignedBuffer,
} from "./libc.ts";

export const BLOCK = 4096;
export const CHUNK = 4 * 1024 * 1024;
const NBUF = 3;
/** Fast path: positional reads in flight at once (< NBUF). */
const AHEAD = 1;
/** Zero runs shorter than this are written as data (fewer syscalls). */
const MIN_ZERO_RUN = 64 * 1024;
const PROGRESS_EVERY_MS = 3000;
const RSS_GC_MARK = 72 * 1024 * 1024;

export interface WriteOptions {
  /** Bytes written before the image (the extdump/ntfsdump MBR prefix). */
  prefix?: Uint8Array;
  /** Image size without the prefix when known (checked against the disk first). */
  expectedSize?: number | null;
  /** Called at most every ~3 s and once at the end; pos/total include the prefix. */
  onProgress?: (pos: number, total: number | null) => void;
  /** Interval of onProgress calls (default 3 s). */
  progressEveryMs?: number;
  signal?: AbortSignal;
  /**
   * After the image, zero the rest of the disk (what a previous user of the
   * disk left past the image's end): "cheap" only where the storage zeroes
   * without the data being written (a hole punched in a file disk, a block
   * device that offloads write-zeroes), "always" also by writing (the kernel
   * writes zero pages for BLKZEROOUT when the device cannot). ZERO_DISK_TAIL.
   */
  zeroTail?: "no" | "cheap" | "always";
}

export interface WriteResult {
  /** Bytes put on the disk, prefix included. */
  bytes: number;
  /** Of these, bytes zeroed without being written. */
  zeroBytes: number;
  ms: number;
  /** How zero runs were zeroed: "punch", "zerorange", "blkzeroout", "write", or "none". */
  zeroMethod: string;
  /** The disk past the image: bytes zeroed, how, and how long it took (zeroTail). */
  tail: TailResult;
}

export interface TailResult {
  bytes: number;
  /** "punch" | "zerorange" | "blkzeroout" | "write", "skipped: <why>", or "none" (not asked / nothing past the image). */
  method: string;
  ms: number;
}

const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 5: "EIO", 22: "EINVAL", 28: "ENOSPC", 95: "EOPNOTSUPP" };

function openDirect(path: string): { fd: number; direct: boolean } {
  const base = fs.constants.O_WRONLY | O_CLOEXEC;
  try {
    return { fd: fs.openSync(path, base | fs.constants.O_DIRECT), direct: true };
  } catch (e) {
    if (errnoOf(e) !== "EINVAL") throw e;
    log.debug(`${path}: O_DIRECT not supported, writing through the page cache`);
    return { fd: fs.openSync(path, base), direct: false };
  }
}

function writeAll(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number, len: number, pos: number) =>
      fs.write(fd, buf, off, len, pos, (err, n) => {
        if (err) return reject(err);
        if (n === len) return resolve();
        if (n <= 0) return reject(new Error(`short write at offset ${pos}`));
        step(off + n, len - n, pos + n);
      });
    step(off, len, pos);
  });
}

/**
 * Zeroes [off, off+len) of the target without writing when the storage can.
 * First fallocate(PUNCH_HOLE|KEEP_SIZE), as qemu-img does: on a file a hole;
 * on a block device a write-zeroes the device may do by unmapping (a hole in
 * a loop device's file, thin storage left unallocated) and that is never
 * done by writing (the kernel's NOFALLBACK: EOPNOTSUPP instead). Then
 * ZERO_RANGE on a file, BLKZEROOUT on a block device (write-zeroes that keeps
 * the blocks allocated, or zero pages written by the kernel), then plain
 * writes of a zero buffer.
 */
class Zeroer {
  mode: "punch" | "zerorange" | "blkzeroout" | "write" = "punch";
  constructor(
    private readonly fd: number,
    private readonly target: Target,
    private readonly zero: Uint8Array,
  ) {}
  /** Zeroes [off, off+len) without writing data; false when the storage cannot. */
  tryCheap(off: number, len: number): boolean {
    for (;;) {
      let rc: number;
      switch (this.mode) {
        case "blkzeroout":
          rc = blkZeroOut(this.fd, off, len);
          if (rc === 0) return true;
          this.mode = "write";
          break;
        case "punch":
          rc = fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
          if (rc === 0) return true;
          this.mode = this.target.kind === "block" ? "blkzeroout" : "zerorange";
          break;
        case "zerorange":
          rc = fallocate(this.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
          if (rc === 0) return true;
          this.mode = "write";
          break;
        case "write":
          return false;
      }
      log.debug(`${this.target.path}: zeroing falls back to ${this.mode} (errno ${ERRNO_NAMES[rc] ?? rc})`);
    }
  }
  /** Returns a promise only for the plain-write fallback. */
  run(off: number, len: number): Promise<void> | null {
    if (this.tryCheap(off, len)) return null;
    const ps: Promise<void>[] = [];
    for (let o = 0; o < len; o += this.zero.length) {
      ps.push(writeAll(this.fd, this.zero, 0, Math.min(this.zero.length, len - o), off + o));
    }
    return Promise.all(ps).then(() => undefined);
  }
}

/**
 * Does the block device zero ranges without the data being written
 * (REQ_OP_WRITE_ZEROES offloaded: thin LVM, loop over a file, NVMe/SCSI
 * WRITE ZEROES/UNMAP)? Without it punching fails and BLKZEROOUT makes the
 * kernel write zero pages.
 */
export function offloadsWriteZeroes(path: string): boolean {
  try {
    const rdev = fs.statSync(path).rdev;
    const dev = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
    const base = `/sys/dev/block/${dev}`;
    // a partition has no queue/ of its own: its disk's applies
    const q = fs.existsSync(`${base}/queue`) ? `${base}/queue` : `${base}/../queue`;
    return Number(fs.readFileSync(`${q}/write_zeroes_max_bytes`, "utf8").trim()) > 0;
  } catch {
    return false;
  }
}

/** fallocate / BLKZEROOUT in steps of this many bytes, the abort signal checked between. */
const TAIL_STEP = 1024 * 1024 * 1024;

async function zeroTail(fd: number, target: Target, zeroer: Zeroer, from: number, how: "cheap" | "always", signal?: AbortSignal): Promise<TailResult> {
  const t0 = performance.now();
  // O_DIRECT, fallocate and BLKZEROOUT on a device want sector alignment; the few bytes before the
  // next 4 KiB boundary are written as zeros through the page cache.
  const start = Math.min(target.size, Math.ceil(from / BLOCK) * BLOCK);
  const end = target.kind === "block" ? target.size - (target.size % target.sectorSize) : target.size;
  if (end <= from) return { bytes: 0, method: "none", ms: 0 };
  if (how === "cheap" && target.kind === "block" && !offloadsWriteZeroes(target.path)) {
    return { bytes: 0, method: "skipped: the device does not offload write-zeroes (ZERO_DISK_TAIL=always writes them)", ms: 0 };
  }
  if (start > from) {
    const tfd = fs.openSync(target.path, fs.constants.O_WRONLY | O_CLOEXEC);
    try {
      await writeAll(tfd, new Uint8Array(start - from), 0, start - from, from);
      await fdatasync(tfd);
    } finally {
      fs.closeSync(tfd);
    }
  }
  for (let off = start; off < end; off += TAIL_STEP) {
    if (signal?.aborted) throw new SnfError(`zeroing the disk past the image interrupted: ${errorMessage(signal.reason)}`);
    const len = Math.min(TAIL_STEP, end - off);
    if (how === "cheap") {
      if (!zeroer.tryCheap(off, len)) {
        return { bytes: off - from, method: `skipped: the storage cannot zero without writing (ZERO_DISK_TAIL=always writes them)`, ms: Math.round(performance.now() - t0) };
      }
    } else {
      const p = zeroer.run(off, len);
      if (p) await p;
    }
    await new Promise((r) => setImmediate(r)); // let a signal in between steps
  }
  return { bytes: end - from, method: zeroer.mode, ms: Math.round(performance.now() - t0) };
}

/** With the size unknown up front (compressed, chunked) n is only how far the copy got. */
const tooBig = (n: number, total: number | null, prefixLen: number, target: Target) =>
  new SnfError(`image (${total === null ? `more than ${target.size}` : n} bytes${prefixLen ? " with its 1 MiB prefix" : ""}) does not fit disk ${target.path} (${target.size} bytes)`);

const interrupted = (signal: AbortSignal) => new SnfError(`image copy interrupted: ${errorMessage(signal.reason)}`);

/**
 * The write side of a copy: owns the disk descriptors (O_DIRECT and, for an
 * unaligned tail, buffered), the NBUF aligned buffers and their pending
 * writes, the Zeroer, the first write failure and the counters. A feeder
 * fills `bufs[cur]` from `fill` on (after `slot()`), then calls `flush`.
 */
class ChunkWriter {
  readonly bufs: Uint8Array[] = [];
  /** Writes in flight per buffer; a buffer is refilled only after its own settle. */
  readonly pending: (Promise<void> | null)[] = new Array(NBUF).fill(null);
  /** The buffer being filled and how far. */
  cur = 0;
  fill = 0;
  /** Disk offset of the current buffer. */
  written = 0;
  zeroBytes = 0;
  failure: unknown = null;
  /** Collect garbage when RSS passes the mark after a chunk of source bytes (stream sources). */
  gc = false;
  private fd = -1;
  private tailFd = -1;
  private direct = false;
  private readonly allocs: AlignedBuffer[] = [];
  /** CHUNK zero bytes, never written to (also what a hole is hashed as). */
  readonly zero: Uint8Array;
  private readonly zeroer: Zeroer;
  private lastProgress = performance.now();

  /** Opens the disk; on failure everything it got is released before the throw. */
  constructor(
    private readonly target: Target,
    private readonly o: WriteOptions,
    readonly total: number | null,
    private readonly prefixLen: number,
  ) {
    try {
      try {
        ({ fd: this.fd, direct: this.direct } = openDirect(target.path));
      } catch (e) {
        throw new SnfError(`cannot open disk ${target.path} for writing (${causeOf(e)})`);
      }
      const zeroBuf = allocAligned(CHUNK);
      this.allocs.push(zeroBuf);
      zeroBuf.bytes.fill(0);
      this.zero = zeroBuf.bytes;
      for (let i = 0; i < NBUF; i++) {
        const b = allocAligned(CHUNK);
        this.allocs.push(b);
        this.bufs.push(b.bytes);
      }
      this.zeroer = new Zeroer(this.fd, target, this.zero);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Throws when n more bytes past the current position do not fit the disk. */
  fits(n: number): void {
    const end = this.written + this.fill + n;
    if (end > this.target.size) throw tooBig(end, this.total, this.prefixLen, this.target);
  }

  track(p: Promise<void>): Promise<void> {
    return p.catch((e) => void (this.failure ??= e));
  }

  /**
   * Makes bufs[cur] free to fill: a fresh buffer first waits for its previous
   * writes (the promise returned; null when there is nothing to wait for, so
   * that the hot path pays no extra await). Throws the first write failure.
   */
  slot(): Promise<void> | null {
    const i = this.cur;
    const before = this.fill === 0 ? this.pending[i] : null;
    if (!before) {
      if (this.failure) throw this.failure;
      return null;
    }
    return before.then(() => {
      this.pending[i] = null;
      if (this.failure) throw this.failure;
    });
  }

  /** Classifies the first len bytes of bufs[cur] and issues data writes / zeroing; moves to the next buffer. */
  flush(len: number): void {
    const buf = this.bufs[this.cur]!;
    const base = this.written;
    const alen = this.direct ? len - (len % BLOCK) : len;
    const zero = this.zero;
    const ops: Promise<void>[] = [];
    const data = (s: number, e: number) => {
      if (e > s) ops.push(this.track(writeAll(this.fd, buf, s, e - s, base + s)));
    };
    const zeros = (s: number, e: number) => {
      this.zeroBytes += e - s;
      const p = this.zeroer.run(base + s, e - s);
      if (p) ops.push(this.track(p));
    };
    if (alen === CHUNK && isZero(buf, 0, CHUNK, zero)) {
      zeros(0, CHUNK);
    } else {
      // Runs of 4 KiB blocks; short zero runs stay inside data runs.
      let dataStart = 0;
      let b = 0;
      while (b < alen) {
        if (!isZero(buf, b, BLOCK, zero)) {
          b += BLOCK;
          continue;
        }
        let z = b + BLOCK;
        while (z < alen && isZero(buf, z, BLOCK, zero)) z += BLOCK;
        if (z - b >= MIN_ZERO_RUN) {
          data(dataStart, b);
          zeros(b, z);
          dataStart = z;
        }
        b = z;
      }
      data(dataStart, alen);
    }
    if (alen < len) {
      // Unaligned tail: buffered descriptor (O_DIRECT needs aligned sizes).
      if (this.tailFd < 0) this.tailFd = fs.openSync(this.target.path, fs.constants.O_WRONLY | O_CLOEXEC);
      ops.push(this.track(writeAll(this.tailFd, buf, alen, len - alen, base + alen)));
    }
    this.pending[this.cur] = ops.length ? Promise.all(ops).then(() => undefined) : null;
    this.written += len;
    this.cur = (this.cur + 1) % NBUF;
    this.fill = 0;
  }

  /** The one throttled onProgress (every ~3 s). */
  progress(): void {
    if (!this.o.onProgress) return;
    const now = performance.now();
    if (now - this.lastProgress < (this.o.progressEveryMs ?? PROGRESS_EVERY_MS)) return;
    this.lastProgress = now;
    this.o.onProgress(this.written + this.fill, this.total);
  }

  /** Copies bytes into the buffers, flushing each full one. */
  async bytes(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      this.fits(chunk.length - off);
      const wait = this.slot();
      if (wait) await wait;
      const n = Math.min(CHUNK - this.fill, chunk.length - off);
      this.bufs[this.cur]!.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === CHUNK) {
        this.flush(CHUNK);
        // Source chunks are garbage now. JSC lets ~100 MiB of them pile up
        // before collecting; a full GC (~4 ms) when RSS passes the mark
        // keeps the peak small without paying it on every chunk.
        if (this.gc && process.memoryUsage.rss() > RSS_GC_MARK) Bun.gc(true);
      }
    }
    this.progress();
  }

  /**
   * A zero run: completes the current buffer with zeros, hands whole chunks
   * of it to the zeroer without any buffer, and starts the next buffer with
   * the rest.
   */
  async zeros(n: number): Promise<void> {
    this.fits(n);
    while (n > 0) {
      if (this.fill === 0 && n >= CHUNK) {
        if (this.failure) throw this.failure;
        const len = n - (n % CHUNK);
        this.zeroBytes += len;
        const p = this.zeroer.run(this.written, len);
        if (p) await this.track(p);
        this.written += len;
        n -= len;
        continue;
      }
      const wait = this.slot();
      if (wait) await wait;
      const k = Math.min(CHUNK - this.fill, n);
      this.bufs[this.cur]!.fill(0, this.fill, this.fill + k);
      this.fill += k;
      n -= k;
      if (this.fill === CHUNK) this.flush(CHUNK);
    }
    this.progress();
  }

  /** Flushes the last partial buffer, drains, checks the size, zeroes the tail if asked, fdatasyncs. */
  async finish(t0: number): Promise<WriteResult> {
    const { o, total } = this;
    if (this.fill > 0) this.flush(this.fill);
    await Promise.all(this.pending);
    if (this.failure) throw this.failure;
    if (total !== null && this.written !== total) {
      throw new SnfError(`image stream ended after ${this.written - this.prefixLen} of ${total - this.prefixLen} bytes`);
    }
    const zeroMethod = this.zeroBytes ? this.zeroer.mode : "none";
    if (this.tailFd >= 0) await fdatasync(this.tailFd);
    const tail = o.zeroTail && o.zeroTail !== "no" ? await zeroTail(this.fd, this.target, this.zeroer, this.written, o.zeroTail, o.signal) : { bytes: 0, method: "none", ms: 0 };
    await fdatasync(this.fd);
    o.onProgress?.(this.written, total);
    return { bytes: this.written, zeroBytes: this.zeroBytes, ms: Math.round(performance.now() - t0), zeroMethod, tail };
  }

  /** Waits for every write in flight, ignoring their failures (error path). */
  async drain(): Promise<void> {
    await Promise.all(this.pending).catch(() => {});
  }

  close(): void {
    for (const f of [this.fd, this.tailFd]) if (f >= 0) fs.closeSync(f);
    this.fd = this.tailFd = -1;
    for (const a of this.allocs.splice(0)) a.free();
  }
}

/** Holes are zeroed (and hashed, for IMAGE_VERIFY) in steps of this size, the signal checked between. */
const HOLE_STEP = 256 * 1024 * 1024;

/**
 * Fast path for an unread local file. Where the filesystem tells
 * (lseek SEEK_DATA/SEEK_HOLE, ./extents.ts) only the data extents are read
 * and each hole goes to the writer as zeros by length, never read: zeroed on
 * the disk like a ZeroRun, and fed to the tap (IMAGE_VERIFY) as zeros. The
 * rest of the file, or all of it when the filesystem cannot tell, is read to
 * its end as before. A file that changed size while read is an error: one
 * that grew by that last read, one that shrank by a short read (writeImage
 * reports the short image) or, when only holes were cut off, by its size.
 */
async function feedFile(w: ChunkWriter, file: FileBacking, signal?: AbortSignal): Promise<void> {
  const extents = new FileExtents(file.fd, file.size);
  let pos = 0;
  while (pos < file.size) {
    if (signal?.aborted) throw interrupted(signal);
    const e = extents.at(pos);
    if (!e) break; // the filesystem cannot tell: read the rest
    if (!e.data) {
      await feedHole(w, file, e.end - pos, signal);
      pos = e.end;
      continue;
    }
    const n = await readRange(w, file, pos, e.end, signal);
    pos += n;
    if (pos < e.end) return; // the file ended early: writeImage reports the short image
  }
  if (pos >= file.size) {
    let now: number;
    try {
      now = fs.fstatSync(file.fd).size;
    } catch (e) {
      throw new SnfError(`reading the image failed: ${causeOf(e)}`);
    }
    if (now < file.size) throw new SnfError(`the image shrank from ${file.size} to ${now} bytes while it was being copied`);
  }
  // To the end of the file: the rest where the filesystem cannot tell, else nothing unless it grew.
  const n = await readRange(w, file, pos, Infinity, signal);
  if (pos + n > file.size) throw new SnfError(`the image grew past its ${file.size} bytes while it was being copied`);
}

/** n zero bytes of a hole in the file: zeroed on the disk, and seen as zeros by the tap. */
async function feedHole(w: ChunkWriter, file: FileBacking, n: number, signal?: AbortSignal): Promise<void> {
  while (n > 0) {
    if (signal?.aborted) throw interrupted(signal);
    const k = Math.min(n, HOLE_STEP);
    if (file.tap) for (let o = 0; o < k; o += CHUNK) file.tap(w.zero.subarray(0, Math.min(CHUNK, k - o)));
    await w.zeros(k);
    n -= k;
    if (n > 0) await new Promise((r) => setImmediate(r)); // let a signal in between steps
  }
}

/**
 * Positional reads of [start, end) of the file (end: Infinity = to its end)
 * straight into the writer's aligned buffers from bufs[cur] at fill on,
 * AHEAD of them in flight while earlier chunks are being written. Checks the
 * signal between chunks (closing the fd under a pending pread would be a
 * race). Returns the bytes read: fewer than asked when the file ended first.
 */
async function readRange(w: ChunkWriter, file: FileBacking, start: number, end: number, signal?: AbortSignal): Promise<number> {
  const ahead: Promise<[got: number, asked: number]>[] = [];
  let rpos = start;
  const issue = (slot: number, off: number) => {
    if (rpos >= end) return;
    const before = w.pending[slot];
    w.pending[slot] = null;
    const pos = rpos;
    const len = Math.min(CHUNK - off, end - rpos);
    rpos += len;
    const p = (async (): Promise<[number, number]> => {
      if (before) await before;
      return [await readFull(file.fd, w.bufs[slot]!, off, len, pos), len];
    })();
    p.catch(() => {});
    ahead.push(p);
  };
  let got = 0;
  try {
    issue(w.cur, w.fill);
    for (let i = 1; i < AHEAD; i++) issue((w.cur + i) % NBUF, 0);
    while (ahead.length) {
      if (signal?.aborted) throw interrupted(signal);
      let n: number;
      let asked: number;
      try {
        [n, asked] = await ahead.shift()!;
      } catch (e) {
        throw new SnfError(`reading the image failed: ${causeOf(e)}`);
      }
      if (w.failure) throw w.failure;
      w.fits(n);
      // Reads complete in the order they were issued, into consecutive slots: this one is bufs[cur] at fill.
      file.tap?.(w.bufs[w.cur]!.subarray(w.fill, w.fill + n));
      w.fill += n;
      got += n;
      if (n < asked) break; // end of file
      if (w.fill === CHUNK) {
        w.flush(CHUNK);
        issue((w.cur + AHEAD - 1) % NBUF, 0);
        w.progress();
      }
    }
  } finally {
    await Promise.allSettled(ahead.splice(0));
  }
  return got;
}

/** Stream path: bytes and ZeroRun items (qcow2, compressed, remote images). */
async function feedStream(w: ChunkWriter, reader: { read(): Promise<{ done: boolean; value?: ImageChunk }> }, signal?: AbortSignal): Promise<void> {
  w.gc = true;
  for (;;) {
    if (signal?.aborted) throw interrupted(signal);
    let r: { done: boolean; value?: ImageChunk };
    try {
      r = await reader.read();
    } catch (e) {
      if (signal?.aborted) throw interrupted(signal);
      throw e instanceof SnfError ? e : new SnfError(`reading the image failed: ${errorMessage(e)}`);
    }
    if (r.done || !r.value) return;
    if (r.value instanceof ZeroRun) await w.zeros(r.value.bytes);
    else if (r.value.length) await w.bytes(r.value);
  }
}

export async function writeImage(
  src: ReadableStream<ImageChunk>,
  targetPath: string,
  o: WriteOptions = {},
): Promise<WriteResult> {
  const t0 = performance.now();
  const prefix = o.prefix ?? new Uint8Array(0);
  const total = o.expectedSize == null ? null : prefix.length + o.expectedSize;
  let w: ChunkWriter;
  try {
    const target = await openTarget(targetPath);
    if (total !== null && total > target.size) throw tooBig(total, total, prefix.length, target);
    if (o.signal?.aborted) throw interrupted(o.signal);
    w = new ChunkWriter(target, o, total, prefix.length);
  } catch (e) {
    await src.cancel().catch(() => {});
    throw e;
  }
  const undo = onCleanup(`close disk ${targetPath}`, () => w.close());
  const file = fileBacking(src);
  const reader = src.getReader();
  const onAbort = () => void (file ? 0 : reader.cancel(o.signal?.reason).catch(() => {}));
  o.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    try {
      if (prefix.length) await w.bytes(prefix);
      if (file) await feedFile(w, file, o.signal);
      else await feedStream(w, reader, o.signal);
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
    }
    if (o.signal?.aborted) throw interrupted(o.signal);
    return await w.finish(t0);
  } catch (e) {
    await w.drain();
    await reader.cancel().catch(() => {});
    if (e instanceof SnfError) throw e;
    throw new SnfError(`writing disk ${targetPath} failed: ${causeOf(e)}`);
  } finally {
    if (file) await reader.cancel().catch(() => {}); // closes the image fd
    reader.releaseLock();
    w.close();
    undo();
  }
}

function readAt(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Reads len bytes at pos unless the file ends first; returns the count. */
async function readFull(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const n = await readAt(fd, buf, off + got, len - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
}

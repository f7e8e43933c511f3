/**
 * The few libc calls Bun's fs does not expose: aligned allocation, memcmp
 * (fast zero-block test), fallocate, ioctl(BLKGETSIZE64/BLKZEROOUT), fdatasync,
 * lseek (SEEK_DATA/SEEK_HOLE: where a sparse file's data is).
 * Loaded lazily so that importing the disk modules costs nothing.
 */
import { dlopen, FFIType, ptr, toArrayBuffer, type Pointer } from "bun:ffi";

const O = {
  posix_memalign: { args: [FFIType.ptr, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  free: { args: [FFIType.ptr], returns: FFIType.void },
  memcmp: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  fdatasync: { args: [FFIType.i32], returns: FFIType.i32 },
  lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
  __errno_location: { args: [], returns: FFIType.ptr },
} as const;

type Lib = ReturnType<typeof dlopen<typeof O>>["symbols"];
let lib: Lib | null = null;
function libc(): Lib {
  lib ??= dlopen("libc.so.6", O).symbols;
  return lib;
}

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
/** _IOR(0x12, 114, size_t) */
export const BLKGETSIZE64 = 0x80081272;
/** _IO(0x12, 127) */
export const BLKZEROOUT = 0x127f;
/** _IO(0x12, 104) logical block size (int) */
export const BLKSSZGET = 0x1268;

export function errno(): number {
  const p = libc().__errno_location();
  if (!p) return 0;
  return new Int32Array(toArrayBuffer(p, 0, 4))[0] ?? 0;
}

export interface AlignedBuffer {
  bytes: Uint8Array;
  free(): void;
}

/** `len` bytes aligned to `align` (power of two), outside the JS heap. */
export function allocAligned(len: number, align = 4096): AlignedBuffer {
  const out = new BigUint64Array(1);
  const rc = libc().posix_memalign(ptr(out), align, len);
  if (rc !== 0) throw new Error(`posix_memalign(${len}) failed: errno ${rc}`);
  const p = Number(out[0]) as Pointer;
  const bytes = new Uint8Array(toArrayBuffer(p, 0, len));
  let freed = false;
  return {
    bytes,
    free() {
      if (!freed) libc().free(p);
      freed = true;
    },
  };
}

/** True when `len` bytes of `a` at `off` equal `zero` (a zero buffer ≥ len). */
export function isZero(a: Uint8Array, off: number, len: number, zero: Uint8Array): boolean {
  return libc().memcmp(ptr(a, off), ptr(zero), len) === 0;
}

/** fallocate(2); returns 0 or the errno. */
export function fallocate(fd: number, mode: number, off: number, len: number): number {
  return libc().fallocate(fd, mode, off, len) === 0 ? 0 : errno() || -1;
}

/** ioctl(BLKZEROOUT); returns 0 or the errno. */
export function blkZeroOut(fd: number, off: number, len: number): number {
  const range = new BigUint64Array([BigInt(off), BigInt(len)]);
  return libc().ioctl(fd, BLKZEROOUT, ptr(range)) === 0 ? 0 : errno() || -1;
}

/** Size in bytes of the block device open on fd. */
export function blkGetSize64(fd: number): number {
  const out = new BigUint64Array(1);
  if (libc().ioctl(fd, BLKGETSIZE64, ptr(out)) !== 0) throw new Error(`BLKGETSIZE64 failed: errno ${errno()}`);
  return Number(out[0]);
}

/** Logical sector size of the block device open on fd. */
export function blkSectorSize(fd: number): number {
  const out = new Int32Array(1);
  if (libc().ioctl(fd, BLKSSZGET, ptr(out)) !== 0) return 512;
  return out[0] || 512;
}

export function fdatasync(fd: number): number {
  return libc().fdatasync(fd) === 0 ? 0 : errno() || -1;
}

export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const ENXIO = 6;

/**
 * lseek(2) on a file (SEEK_DATA / SEEK_HOLE); returns the new offset, or
 * -errno. It moves the fd's offset: only for fds read by positional reads.
 */
export function lseek(fd: number, off: number, whence: number): number {
  const r = Number(libc().lseek(fd, off, whence));
  return r >= 0 ? r : -(errno() || 1);
}

/** open(2) flags Node's fs.constants lacks (x86_64/aarch64 values). */
export const O_CLOEXEC = 0o2000000;

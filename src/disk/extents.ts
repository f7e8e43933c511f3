/**
 * Where a local image file's data is, by lseek(SEEK_DATA / SEEK_HOLE), as
 * cp and qemu-img ask it: the writer's fast path reads only the data and
 * hands the holes on as zeros by length, never reading them. Asked one extent
 * at a time, so a file with millions of extents costs no memory.
 *
 * A filesystem that cannot tell (EINVAL, or any other error) makes `at`
 * return null: the caller reads the rest of the file as before. One that does
 * not track holes reports the whole file as data (the kernel's generic
 * lseek), which is the same as reading it.
 */
import { lseek, ENXIO, SEEK_DATA, SEEK_HOLE } from "./libc.ts";

/** Holes shorter than this are read with the data around them (one read instead of a split). */
export const MIN_HOLE = 1024 * 1024;
/**
 * After this many short holes in one extent the file is fragmented there: the
 * next WINDOW bytes are read whole (holes read as zeros) instead of being
 * mapped two lseeks per hole. Bounds the lseeks of a call and their cost per byte.
 */
const MAX_SHORT_HOLES = 64;
const WINDOW = 64 * 1024 * 1024;

export interface Extent {
  /** true: bytes to read; false: a hole, zeros without reading. */
  data: boolean;
  /** Where the extent ends (exclusive, ≤ the size the file had when opened). */
  end: number;
}

export class FileExtents {
  /** The next data offset found after the hole that ended the last data extent (saves an lseek). */
  private cached: { hole: number; data: number } | null = null;

  constructor(
    private readonly fd: number,
    /** The file's size when opened: extents are clipped to it. */
    private readonly size: number,
  ) {}

  /**
   * The extent starting at `pos` (< size): data up to the next hole of at
   * least MIN_HOLE bytes (shorter holes inside are read as data; past
   * MAX_SHORT_HOLES of them, a WINDOW read whole), or a hole up to the next
   * data. null when the filesystem cannot tell: read from pos on.
   */
  at(pos: number): Extent | null {
    const d = this.nextData(pos);
    if (d === null) return null;
    if (d > pos) return { data: false, end: d };
    let h = lseek(this.fd, pos, SEEK_HOLE);
    // ENXIO here: pos is past the file's end now (it shrank): read, and the read comes up short.
    if (h < 0) return h === -ENXIO ? { data: true, end: this.size } : null;
    for (let short = 0; h < this.size; short++) {
      const next = this.nextData(h);
      if (next === null) return { data: true, end: h };
      if (next >= this.size && this.size - h < MIN_HOLE) return { data: true, end: this.size }; // a short hole at the end
      if (next - h >= MIN_HOLE) {
        this.cached = { hole: h, data: next };
        break;
      }
      if (short === MAX_SHORT_HOLES) return { data: true, end: Math.min(this.size, Math.max(next, pos + WINDOW)) };
      const h2 = lseek(this.fd, next, SEEK_HOLE);
      if (h2 < 0 || h2 <= next) return { data: true, end: next }; // cannot tell more: stop at what is known
      h = h2;
    }
    return { data: true, end: Math.min(h, this.size) };
  }

  /** First data offset at or after pos, clipped to size (ENXIO: no more data); null when unknown. */
  private nextData(pos: number): number | null {
    if (this.cached?.hole === pos) return this.cached.data;
    const d = lseek(this.fd, pos, SEEK_DATA);
    if (d >= 0) return Math.min(d, this.size);
    return d === -ENXIO ? this.size : null;
  }
}

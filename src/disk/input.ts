/**
 * A stream that is really a regular file open on an fd (an uncompressed local
 * image). The source marks the stream it returns; openImage and writeImage
 * look the mark up and, as long as nobody has read from the stream, read the
 * file themselves with positional reads straight into the writer's aligned
 * buffers (no per-chunk allocation, no copy). Whoever takes the fast path
 * ends it with `stream.cancel()`, which closes the fd.
 */
export interface FileBacking {
  fd: number;
  /** File size when opened (bytes). */
  size: number;
  /** Called with every byte of the file, in order, by whoever reads it on the fast path (IMAGE_VERIFY hashing). */
  tap?: (bytes: Uint8Array) => void;
}

const marks = new WeakMap<ReadableStream<unknown>, FileBacking>();

export function markFileBacked(stream: ReadableStream<Uint8Array>, file: FileBacking): ReadableStream<Uint8Array> {
  marks.set(stream, file);
  return stream;
}

/** Called by the source when its stream is first read: the fast path is off. */
export function unmarkFileBacked(stream: ReadableStream<Uint8Array>): void {
  marks.delete(stream);
}

/** The file behind `stream` when it is marked and still unread, else null. */
export function fileBacking(stream: ReadableStream<unknown>): FileBacking | null {
  const f = marks.get(stream);
  return f && !stream.locked ? f : null;
}

/**
 * A run of zero bytes in an image stream, given by its length instead of as
 * bytes (unallocated or zero clusters of a qcow2 image): the writer zeroes
 * it on the disk (fallocate / BLKZEROOUT) without building a buffer of it.
 */
export class ZeroRun {
  constructor(readonly bytes: number) {}
}

/** What the disk writer reads: bytes, or runs of zeros given by length. */
export type ImageChunk = Uint8Array | ZeroRun;

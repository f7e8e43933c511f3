/**
 * A deterministic newc ("070701") cpio writer for the initramfs. Entries are
 * written in C-locale path order with fixed inode numbers, owner root and
 * mtime 0, so the same inputs always give the same bytes. Device nodes are
 * written as headers: building needs no mknod.
 */
export type CpioEntry =
  | { path: string; type: "dir"; mode?: number }
  | { path: string; type: "file"; data: Uint8Array; mode?: number }
  | { path: string; type: "symlink"; target: string }
  | { path: string; type: "chardev"; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const enc = new TextEncoder();
const hex8 = (n: number) => n.toString(16).padStart(8, "0");
const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(f: { ino: number; mode: number; nlink: number; size: number; rmaj: number; rmin: number; namesize: number }): string {
  return (
    "070701" +
    [f.ino, f.mode, 0, 0, f.nlink, 0, f.size, 0, 0, f.rmaj, f.rmin, f.namesize, 0].map(hex8).join("")
  );
}

function normalize(p: string): string {
  const n = p.replace(/^\/+|^\.\/+/, "").replace(/\/+$/, "");
  if (!n || n.split("/").some((c) => c === ".." || c === "." || c === "")) throw new Error(`bad cpio path ${JSON.stringify(p)}`);
  return n;
}

/** Encode entries (parents must be listed; order is normalized here). Pure. */
export function writeCpio(entries: CpioEntry[]): Uint8Array {
  const sorted = entries
    .map((e) => ({ ...e, path: normalize(e.path) }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.path === sorted[i - 1]!.path) throw new Error(`duplicate cpio path ${sorted[i]!.path}`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const push = (b: Uint8Array) => {
    chunks.push(b);
    total += b.length;
  };
  const emit = (ino: number, mode: number, nlink: number, name: string, data: Uint8Array, rmaj = 0, rmin = 0) => {
    const nameBytes = enc.encode(`${name}\0`);
    const h = enc.encode(header({ ino, mode, nlink, size: data.length, rmaj, rmin, namesize: nameBytes.length }));
    push(h);
    push(nameBytes);
    push(new Uint8Array(pad4(h.length + nameBytes.length)));
    if (data.length) {
      push(data);
      push(new Uint8Array(pad4(data.length)));
    }
  };
  const none = new Uint8Array(0);
  sorted.forEach((e, i) => {
    const ino = i + 1;
    switch (e.type) {
      case "dir":
        emit(ino, S_IFDIR | (e.mode ?? 0o755), 2, e.path, none);
        break;
      case "file":
        emit(ino, S_IFREG | (e.mode ?? 0o644), 1, e.path, e.data);
        break;
      case "symlink":
        emit(ino, S_IFLNK | 0o777, 1, e.path, enc.encode(e.target));
        break;
      case "chardev":
        emit(ino, S_IFCHR | (e.mode ?? 0o600), 1, e.path, none, e.major, e.minor);
        break;
    }
  });
  emit(0, 0, 1, "TRAILER!!!", none);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/**
 * What a disk path is (block device or regular file) and how big it is.
 * Nothing here writes: openTarget opens for writing only to prove it can.
 */
import fs from "node:fs";
import { SnfError, errorMessage, causeOf } from "../errors.ts";
import { blkGetSize64, blkSectorSize, O_CLOEXEC } from "./libc.ts";

export interface Target {
  path: string;
  kind: "block" | "file";
  /** Bytes. Never changes: files are neither truncated nor extended. */
  size: number;
  /** Logical sector size (512 for files). */
  sectorSize: number;
}


/** Block device or regular file (anything else is refused); one line on any failure. */
export function diskKind(path: string): Target["kind"] {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw new SnfError(`disk ${path} does not exist (${causeOf(e)})`);
  }
  if (st.isBlockDevice()) return "block";
  if (st.isFile()) return "file";
  throw new SnfError(`disk ${path} is neither a block device nor a regular file`);
}

/** Stat, open with `mode` (proving access), and size a disk; one line on any failure. */
function probe(path: string, mode: "write" | "read"): Target {
  const kind = diskKind(path);
  let fd: number;
  try {
    fd = fs.openSync(path, (mode === "write" ? fs.constants.O_WRONLY : fs.constants.O_RDONLY) | O_CLOEXEC);
  } catch (e) {
    throw new SnfError(`disk ${path} is not ${mode === "write" ? "writable" : "readable"} (${causeOf(e)})`);
  }
  try {
    if (kind === "file") return { path, kind, size: fs.fstatSync(fd).size, sectorSize: 512 };
    return { path, kind, size: blkGetSize64(fd), sectorSize: blkSectorSize(fd) };
  } catch (e) {
    throw new SnfError(`cannot get the size of disk ${path}: ${errorMessage(e)}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** The disk create/import writes: must exist and be writable. Nothing is written. */
export async function openTarget(path: string): Promise<Target> {
  return probe(path, "write");
}

/** Like openTarget but only needs read access (export). */
export async function statDisk(path: string): Promise<Target> {
  return probe(path, "read");
}

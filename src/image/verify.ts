/**
 * IMAGE_VERIFY: checking an image against a signed SHA512SUMS/SHA256SUMS file
 * next to it (same directory in IMAGE_DIR, or same URL directory).
 *
 *   prepareVerification (before the disk is touched): find the sums file that
 *     lists the image, check its signature with gpgv against IMAGE_KEYRING,
 *     take the expected hash from the signed text, and make the source hash
 *     every byte as it is read (the copy itself: no second read).
 *   Verification.finish (after the copy, before the helper): compare; on a
 *     mismatch zero the first and last MiB of the disk (partition tables,
 *     boot code, GPT backup) so it cannot boot or pass for a deployment.
 *
 * Policies: off (never look), if-present (check when a sums file lists the
 * image; it must then be signed by a key of IMAGE_KEYRING), required (an image
 * that no signed sums file lists is refused).
 */
import fs from "node:fs";
import path from "node:path";
import type { Config } from "../config.ts";
import { fileBacking, markFileBacked } from "../disk/input.ts";
import { O_CLOEXEC } from "../disk/libc.ts";
import { SnfError, causeOf, errnoOf, errorMessage } from "../errors.ts";
import { log } from "../log.ts";
import type { Monitor } from "../monitor.ts";
import { gpgvVerify } from "./gpgv.ts";
import { isQcow2 } from "./qcow2.ts";
import type { ImageSource } from "./sources/kind.ts";
import { HttpStatusError, fetchDocument, fetchLimits, redactUrl } from "../net/fetch.ts";
import { MAX_SUMS_BYTES, SIGNATURE_SUFFIXES, SUMS_FILES, isClearsigned, parseSums, type SumsAlgo } from "./sums.ts";

export type VerifyPolicy = "off" | "if-present" | "required";
export const WIPE_BYTES = 1024 * 1024;

export interface Verification {
  algo: SumsAlgo;
  expected: string;
  /** The sums file, for messages. */
  sums: string;
  signer: string;
  /** Compare the hash of what was copied (the verdict goes to the monitor too); on a mismatch wipe the disk's ends and throw. */
  finish(diskPath: string, diskSize: number, monitor?: Pick<Monitor, "info">): void;
}

/** Reads a sibling file of the image: bytes, or null when it does not exist. */
type Sibling = (name: string) => Promise<Uint8Array | null>;

interface Located {
  /** File name the sums entry must have. */
  file: string;
  /** Display of the image's directory. */
  where: string;
  read: Sibling;
}

function locate(source: ImageSource, config: Pick<Config, "HTTP_MAX_REDIRECTS" | "HTTP_TIMEOUT">, signal?: AbortSignal): Located | null {
  if (source.kind === "local" && source.path) {
    const dir = path.dirname(source.path);
    return {
      file: path.basename(source.path),
      where: `${source.display.slice(0, source.display.length - path.basename(source.path).length)}`,
      read: async (name) => readLocal(path.join(dir, name)),
    };
  }
  if (source.kind === "http" && source.url) {
    const u = new URL(source.url);
    const file = decodeURIComponent(u.pathname.slice(u.pathname.lastIndexOf("/") + 1));
    if (!file) return null;
    return {
      file,
      where: redactUrl(new URL(".", u)),
      read: async (name) => {
        try {
          return await fetchDocument(new URL(name, u).href, { what: "sums file", ...fetchLimits(config), maxBytes: MAX_SUMS_BYTES, signal });
        } catch (e) {
          if (e instanceof HttpStatusError && (e.status === 404 || e.status === 410)) return null; // not there
          throw e;
        }
      },
    };
  }
  return null;
}

function readLocal(p: string): Uint8Array | null {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO in its place must not hang the open; fstat then refuses it.
    fd = fs.openSync(p, fs.constants.O_RDONLY | O_CLOEXEC | fs.constants.O_NONBLOCK);
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return null;
    throw new SnfError(`cannot read ${p} (${causeOf(e)})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SnfError(`${p} is not a regular file`);
    if (st.size > MAX_SUMS_BYTES) throw new SnfError(`${p} is larger than ${MAX_SUMS_BYTES} bytes`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < st.size) {
      const n = fs.readSync(fd, buf, got, st.size - got, got);
      if (n === 0) break;
      got += n;
    }
    return new Uint8Array(buf.subarray(0, got));
  } finally {
    fs.closeSync(fd);
  }
}

/** Does the (not yet verified) text have a line for `file`? Only picks which sums file to verify. */
function mentions(bytes: Uint8Array, file: string): boolean {
  const text = new TextDecoder().decode(bytes);
  return text.split("\n").some((l) => {
    const m = /^[0-9a-fA-F]{64,128} [ *](.+?)\r?$/.exec(l);
    return m !== null && m[1]!.replace(/^\.\//, "") === file;
  });
}

/**
 * Before the copy: decide whether and against what the image is checked.
 * Returns null when nothing is checked (policy off, img_id null, or
 * if-present without a sums file listing the image). Throws one line on any
 * refusal. The source is changed in place to hash what it delivers.
 */
export async function prepareVerification(
  source: ImageSource,
  config: Pick<Config, "IMAGE_VERIFY" | "IMAGE_KEYRING" | "HTTP_MAX_REDIRECTS" | "HTTP_TIMEOUT">,
  signal?: AbortSignal,
): Promise<Verification | null> {
  const policy = config.IMAGE_VERIFY as VerifyPolicy;
  if (policy === "off" || source.kind === "null") return null;
  const keyring = config.IMAGE_KEYRING;
  const loc = locate(source, config, signal);
  if (!loc) {
    if (policy === "required") throw new SnfError(`IMAGE_VERIFY=required: image ${source.display} has no place for a SHA256SUMS file`);
    return null;
  }
  const names = SUMS_FILES.map((s) => s.name).join(" or ");
  let chosen: { name: string; algo: SumsAlgo; bytes: Uint8Array } | null = null;
  for (const s of SUMS_FILES) {
    const bytes = await loc.read(s.name);
    if (bytes && mentions(bytes, loc.file)) {
      chosen = { ...s, bytes };
      break;
    }
  }
  if (!chosen) {
    if (policy === "required") throw new SnfError(`IMAGE_VERIFY=required: no ${names} in ${loc.where} lists image ${source.display}`);
    log.warn(`image ${source.display} is not verified: no ${names} in ${loc.where} lists it (IMAGE_VERIFY=if-present)`);
    return null;
  }
  const shown = `${loc.where}${chosen.name}`;
  if (!keyring) throw new SnfError(`${shown} lists image ${source.display} but IMAGE_KEYRING is not set: its signature cannot be checked (set IMAGE_KEYRING or IMAGE_VERIFY=off)`);
  if (!fs.existsSync(keyring)) throw new SnfError(`IMAGE_KEYRING ${keyring} does not exist`);

  let signature: Uint8Array | null = null;
  let sigName = "";
  if (!isClearsigned(chosen.bytes)) {
    for (const suffix of SIGNATURE_SUFFIXES) {
      signature = await loc.read(chosen.name + suffix);
      if (signature) {
        sigName = chosen.name + suffix;
        break;
      }
    }
    if (!signature) throw new SnfError(`${shown} is not signed: no ${SIGNATURE_SUFFIXES.map((x) => chosen!.name + x).join(", ")} next to it and not clearsigned (IMAGE_VERIFY=${policy})`);
  }
  const verdict = await gpgvVerify({ keyring, data: chosen.bytes, signature, shown: sigName ? `${loc.where}${sigName}` : shown, signal });
  const signed = verdict.signedText ?? chosen.bytes;
  const entries = parseSums(new TextDecoder("utf-8", { fatal: false }).decode(signed), chosen.algo, shown);
  const expected = entries.get(loc.file);
  if (!expected) throw new SnfError(`${shown}: the signed part does not list image ${source.display}`);
  const signer = verdict.fingerprints[0]!;
  log.info(`image ${source.display}: ${chosen.name} signed by ${signer}; ${chosen.algo} checked during the copy`);

  const hasher = new Bun.CryptoHasher(chosen.algo);
  let hashed = 0;
  const update = (b: Uint8Array) => {
    hasher.update(b);
    hashed += b.length;
  };
  const mismatch = (got: string, disk: string) =>
    new SnfError(`image ${source.display} does not match ${shown}: ${chosen!.algo} ${got.slice(0, 16)}… expected ${expected.slice(0, 16)}…; ${disk}`);
  // qcow2 is converted by positional reads in cluster order, not front to back: a local qcow2
  // is hashed in one sequential pass when opened, before its tables are parsed or the disk touched.
  let early: string | null = null;
  const open = source.open.bind(source);
  source.open = async (s?: AbortSignal) => {
    const inner = await open(s);
    const file = fileBacking(inner);
    if (!file || !isQcow2(readHead(file.fd))) return tap(inner, update);
    try {
      await hashFile(file.fd, update, s);
    } catch (e) {
      await inner.cancel().catch(() => {});
      throw e instanceof SnfError ? e : new SnfError(`reading image ${source.display} to check it failed (${causeOf(e)})`);
    }
    early = hasher.digest("hex");
    if (early !== expected) {
      await inner.cancel().catch(() => {});
      throw mismatch(early, "the disk was not touched");
    }
    return inner;
  };
  if (source.ranges) {
    source.ranges = async () => {
      throw new SnfError(`image ${source.display} is qcow2 read by HTTP ranges, which IMAGE_VERIFY cannot hash as it streams: put it in IMAGE_DIR with its ${chosen!.name}, or set IMAGE_VERIFY=off`);
    };
  }

  return {
    algo: chosen.algo,
    expected,
    sums: shown,
    signer,
    finish(diskPath, diskSize, monitor) {
      const got = early ?? hasher.digest("hex");
      if (got === expected) {
        log.info(`image ${source.display}: ${chosen!.algo} matches ${shown} (${hashed} bytes)`);
        monitor?.info(`Image verified: ${chosen!.algo} matches ${chosen!.name} signed by ${signer}.`);
        return;
      }
      wipeEnds(diskPath, diskSize);
      throw mismatch(got, "the disk's first and last MiB were zeroed");
    },
  };
}

/**
 * A stream that hands on `inner` and feeds every byte to `update`. A
 * file-backed inner stream stays file-backed (the writer's fast path reads
 * the file itself and calls `tap` with each chunk it read, in order).
 */
function tap(inner: ReadableStream<Uint8Array>, update: (b: Uint8Array) => void): ReadableStream<Uint8Array> {
  const file = fileBacking(inner);
  const reader = inner.getReader();
  const out = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        try {
          const r = await reader.read();
          if (r.done) return c.close();
          update(r.value);
          c.enqueue(r.value);
        } catch (e) {
          c.error(e);
        }
      },
      async cancel(why) {
        await reader.cancel(why).catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  return file ? markFileBacked(out, { ...file, tap: update }) : out;
}

function readHead(fd: number): Uint8Array {
  const head = new Uint8Array(4);
  const n = fs.readSync(fd, head, 0, 4, 0);
  return head.subarray(0, n);
}

/** One sequential pass over a file (positional reads: the fd's offset is not moved). */
async function hashFile(fd: number, update: (b: Uint8Array) => void, signal?: AbortSignal): Promise<void> {
  const CHUNK = 4 * 1024 * 1024;
  const buf = new Uint8Array(CHUNK); // update() has consumed it before the next read
  for (let pos = 0; ; ) {
    if (signal?.aborted) throw new SnfError(`checking the image interrupted: ${errorMessage(signal.reason)}`);
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, CHUNK, pos, (e, got) => (e ? reject(e) : resolve(got))));
    if (n === 0) return;
    update(buf.subarray(0, n));
    pos += n;
  }
}

/** Zero the first and the last MiB of the disk and sync (best effort is not enough: errors throw). */
export function wipeEnds(diskPath: string, diskSize: number): void {
  let fd: number;
  try {
    fd = fs.openSync(diskPath, fs.constants.O_WRONLY | O_CLOEXEC);
  } catch (e) {
    throw new SnfError(`the image did not verify and disk ${diskPath} could not be opened to wipe it (${causeOf(e)})`);
  }
  try {
    const zero = Buffer.alloc(Math.min(WIPE_BYTES, diskSize));
    fs.writeSync(fd, zero, 0, zero.length, 0);
    if (diskSize > WIPE_BYTES) {
      const tail = Math.min(WIPE_BYTES, diskSize - WIPE_BYTES);
      fs.writeSync(fd, zero, 0, tail, diskSize - tail);
    }
    fs.fdatasyncSync(fd);
  } catch (e) {
    throw new SnfError(`the image did not verify and wiping disk ${diskPath} failed (${causeOf(e)})`);
  } finally {
    fs.closeSync(fd);
  }
}

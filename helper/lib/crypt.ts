/**
 * crypt(3) password hashing with the helper's own libxcrypt (libcrypt.so.1,
 * the same library the guest's PAM uses), through bun:ffi:
 * crypt_gensalt_rn() makes the setting (salt from the kernel's entropy) and
 * crypt_rn() hashes. If the library cannot be loaded, `mkpasswd --stdin`
 * is used instead. The password never appears in any process's argv.
 */
import { dlopen, FFIType, ptr, type Pointer } from "bun:ffi";
import type { RunFn } from "./exec.ts";

export const HASH_METHODS = ["sha512", "sha256", "md5", "blowfish", "yescrypt", "sha1"] as const;
export type HashMethod = (typeof HASH_METHODS)[number];

const PREFIX: Record<HashMethod, string> = {
  sha512: "$6$",
  sha256: "$5$",
  md5: "$1$",
  blowfish: "$2b$",
  yescrypt: "$y$",
  sha1: "$sha1$", // NetBSD's sha1crypt
};
const MKPASSWD_METHOD: Record<HashMethod, string> = {
  sha512: "sha-512",
  sha256: "sha-256",
  md5: "md5",
  blowfish: "bcrypt",
  yescrypt: "yescrypt",
  sha1: "sha1crypt", // not offered by mkpasswd: the FFI path is needed
};

const ALIASES: Record<string, HashMethod> = {
  sha512: "sha512",
  "sha-512": "sha512",
  sha256: "sha256",
  "sha-256": "sha256",
  md5: "md5",
  blowfish: "blowfish",
  bcrypt: "blowfish",
  yescrypt: "yescrypt",
  sha1: "sha1",
  sha1crypt: "sha1",
};

/** PASSWD_HASHING_METHOD value → method (undefined/empty → the family's default, sha512). Throws naming a bad value. */
export function parseHashMethod(value: string | undefined, fallback: HashMethod = "sha512"): HashMethod {
  if (value === undefined || value.trim() === "") return fallback;
  const m = ALIASES[value.trim().toLowerCase()];
  if (!m) throw new Error(`PASSWD_HASHING_METHOD ${JSON.stringify(value)} is not one of ${HASH_METHODS.join(", ")}`);
  return m;
}

const CRYPT_DATA_SIZE = 32768; // sizeof(struct crypt_data) in libxcrypt
const OUTPUT_SIZE = 384; // CRYPT_OUTPUT_SIZE

type Lib = {
  crypt_gensalt_rn: (prefix: Pointer, count: number, rbytes: Pointer | null, nrbytes: number, out: Pointer, size: number) => Pointer | null;
  crypt_rn: (phrase: Pointer, setting: Pointer, data: Pointer, size: number) => Pointer | null;
};
let lib: Lib | null | undefined;

function libcrypt(): Lib | null {
  if (lib !== undefined) return lib;
  const names = [process.env.SNF_HELPER_LIBCRYPT, "libcrypt.so.1"].filter((x): x is string => !!x);
  for (const name of names) {
    try {
      const l = dlopen(name, {
        crypt_gensalt_rn: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.ptr },
        crypt_rn: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.ptr },
      });
      lib = l.symbols as unknown as Lib;
      return lib;
    } catch {
      // try the next name
    }
  }
  lib = null;
  return lib;
}

const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, "utf8"), Buffer.from([0])]);
function readCstr(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString("utf8");
}

/** crypt(phrase, setting) through libxcrypt; undefined if the library is unavailable; throws if it refuses. */
export function cryptFfi(phrase: string, setting: string): string | undefined {
  const l = libcrypt();
  if (!l) return undefined;
  const data = Buffer.alloc(CRYPT_DATA_SIZE);
  const p = cstr(phrase);
  try {
    const r = l.crypt_rn(ptr(p), ptr(cstr(setting)), ptr(data), CRYPT_DATA_SIZE);
    if (r === null) throw new Error("crypt refused the setting");
    return readCstr(data.subarray(0, OUTPUT_SIZE));
  } finally {
    p.fill(0);
    data.fill(0);
  }
}

function gensaltFfi(method: HashMethod): string | undefined {
  const l = libcrypt();
  if (!l) return undefined;
  const out = Buffer.alloc(OUTPUT_SIZE);
  // count 0 = libxcrypt's default cost, except bcrypt whose default (5) is too cheap.
  const count = method === "blowfish" ? 10 : 0;
  const r = l.crypt_gensalt_rn(ptr(cstr(PREFIX[method])), count, null, 0, ptr(out), OUTPUT_SIZE);
  if (r === null) throw new Error(`libcrypt cannot make a ${method} salt`);
  return readCstr(out);
}

/** Hash a password with `method`. libxcrypt via FFI, else `mkpasswd --stdin` through `run`. */
export async function hashPassword(password: string, method: HashMethod, run?: RunFn, opts: { ffi?: boolean } = {}): Promise<string> {
  if (/[\n\0]/.test(password)) throw new Error("the password contains a newline or NUL byte");
  const setting = opts.ffi === false ? undefined : gensaltFfi(method);
  if (setting !== undefined) {
    const h = cryptFfi(password, setting);
    if (h && h.startsWith(PREFIX[method]) && !h.startsWith("*")) return h;
    throw new Error(`libcrypt failed to hash with ${method}`);
  }
  if (!run) throw new Error("libcrypt.so.1 is not available and no mkpasswd fallback was given");
  const r = await run(["mkpasswd", "--stdin", "-m", MKPASSWD_METHOD[method]], { input: `${password}\n` });
  const h = r.stdout.trim();
  if (!h.startsWith(PREFIX[method])) throw new Error(`mkpasswd produced no ${method} hash`);
  return h;
}

/** Does `password` match crypt `hash` (checked with libxcrypt)? */
export function verifyPassword(password: string, hash: string): boolean {
  try {
    return cryptFfi(password, hash) === hash;
  } catch {
    return false;
  }
}

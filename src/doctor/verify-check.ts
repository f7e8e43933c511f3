/** doctor: the IMAGE_VERIFY policy, its keyring and gpgv. */
import fs from "node:fs";
import type { Config } from "../config.ts";
import { causeOf } from "../errors.ts";
import { type CheckOutcome, fail, ok, warn } from "./schema.ts";

/**
 * What a keyring file is: a binary OpenPGP keyring (counted public keys), a
 * GnuPG keybox, or an ASCII-armored export (which gpgv cannot read).
 */
export function keyringKind(bytes: Uint8Array): { kind: "keyring"; keys: number } | { kind: "keybox" } | { kind: "armored" } | { kind: "unknown" } {
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  if (head.startsWith("-----BEGIN PGP")) return { kind: "armored" };
  if (bytes.length >= 12 && new TextDecoder().decode(bytes.subarray(8, 12)) === "KBXf") return { kind: "keybox" };
  let keys = 0;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (!(b & 0x80)) return { kind: "unknown" };
    let tag: number;
    let len: number;
    if (b & 0x40) {
      tag = b & 0x3f;
      const o1 = bytes[i + 1] ?? 0;
      if (o1 < 192) [len, i] = [o1, i + 2];
      else if (o1 < 224) [len, i] = [((o1 - 192) << 8) + (bytes[i + 2] ?? 0) + 192, i + 3];
      else if (o1 === 255) [len, i] = [new DataView(bytes.buffer, bytes.byteOffset + i + 2, 4).getUint32(0), i + 6];
      else return { kind: "unknown" }; // partial lengths do not occur in key material
    } else {
      tag = (b >> 2) & 0x0f;
      const t = b & 3;
      if (t === 3) return { kind: "unknown" };
      const n = [1, 2, 4][t]!;
      if (i + 1 + n > bytes.length) return { kind: "unknown" };
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + bytes[i + 1 + k]!;
      i += 1 + n;
    }
    if (tag === 6) keys++;
    i += len;
  }
  return i === bytes.length && keys > 0 ? { kind: "keyring", keys } : { kind: "unknown" };
}

export function checkImageVerify(config: Pick<Config, "IMAGE_VERIFY" | "IMAGE_KEYRING">): CheckOutcome {
  const policy = config.IMAGE_VERIFY;
  const keyring = config.IMAGE_KEYRING;
  const set = "set IMAGE_VERIFY=if-present or required and IMAGE_KEYRING to check images against signed SHA256SUMS files";
  if (policy === "off") return ok(`IMAGE_VERIFY=off: images are not checked against signed sums files${keyring ? ` (IMAGE_KEYRING ${keyring} unused)` : ""}`, { details: [set] });
  const gpgv = Bun.which("gpgv", { PATH: "/usr/bin:/bin" });
  if (!gpgv) return fail(`IMAGE_VERIFY=${policy} but gpgv is not installed`, "apt-get install gpgv");
  if (!keyring) return fail(`IMAGE_VERIFY=${policy} but IMAGE_KEYRING is not set: no sums file can be checked`, "set IMAGE_KEYRING to the keyring of the keys that sign your SHA256SUMS files");
  let bytes: Uint8Array;
  try {
    const st = fs.statSync(keyring);
    if (!st.isFile()) return fail(`IMAGE_KEYRING ${keyring} is not a regular file`, "point IMAGE_KEYRING at a keyring file (gpg --export KEYID > FILE)");
    if (st.size > 64 * 1024 * 1024) return fail(`IMAGE_KEYRING ${keyring} is larger than 64 MiB`, "export only the signing keys (gpg --export KEYID > FILE)");
    bytes = new Uint8Array(fs.readFileSync(keyring));
  } catch (e) {
    return fail(`IMAGE_KEYRING ${keyring} is not readable (${causeOf(e)})`, "create it (gpg --export KEYID > FILE) or fix the path");
  }
  const k = keyringKind(bytes);
  const what = `IMAGE_VERIFY=${policy}, IMAGE_KEYRING ${keyring}`;
  switch (k.kind) {
    case "armored":
      return fail(`${what} is ASCII-armored: gpgv cannot read it`, `gpg --dearmor < ${keyring} > ${keyring.replace(/\.asc$/, "")}.gpg and point IMAGE_KEYRING there`);
    case "keybox":
      return ok(`${what} (GnuPG keybox) checked by ${gpgv}`);
    case "keyring":
      return ok(`${what} (${k.keys} public key${k.keys === 1 ? "" : "s"}) checked by ${gpgv}`);
    default:
      return warn(`${what}: not recognized as an OpenPGP keyring`, "export the signing keys with gpg --export KEYID > FILE");
  }
}

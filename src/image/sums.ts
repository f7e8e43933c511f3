/**
 * SHA256SUMS / SHA512SUMS files as Debian and Ubuntu publish them (GNU
 * coreutils format: `HEX  NAME` or `HEX *NAME`, one a line). The file is
 * untrusted input: its size is bounded by the caller, every non-empty line
 * must be an entry of the right hash length, and a name listed twice with two
 * different hashes is refused. Names are never printed.
 */
import { SnfError } from "../errors.ts";

export type SumsAlgo = "sha256" | "sha512";

/** The file names looked for, best first. */
export const SUMS_FILES: readonly { name: string; algo: SumsAlgo }[] = [
  { name: "SHA512SUMS", algo: "sha512" },
  { name: "SHA256SUMS", algo: "sha256" },
];
/** Detached signature suffixes, in the order they are looked for. */
export const SIGNATURE_SUFFIXES = [".gpg", ".sign", ".asc"] as const;
/** Largest sums file (or signature) read. */
export const MAX_SUMS_BYTES = 1024 * 1024;

const HEX_LEN: Record<SumsAlgo, number> = { sha256: 64, sha512: 128 };

/** Parse a sums file; returns name → lower-case hex. Throws one line naming the file and the line number. */
export function parseSums(text: string, algo: SumsAlgo, shown: string): Map<string, string> {
  const re = new RegExp(`^([0-9a-fA-F]{${HEX_LEN[algo]}}) [ *](.+)$`);
  const out = new Map<string, string>();
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const m = re.exec(line);
    // A leading backslash is coreutils' escaped-name form; such names are not images we look up.
    if (!m || m[2]!.startsWith("\\") || /[\0-\x1f\x7f]/.test(m[2]!)) throw new SnfError(`${shown}:${i + 1}: not a "${algo.toUpperCase()} NAME" line`);
    const name = m[2]!.replace(/^\.\//, "");
    const hex = m[1]!.toLowerCase();
    const prev = out.get(name);
    if (prev !== undefined && prev !== hex) throw new SnfError(`${shown}:${i + 1}: lists the same file twice with different hashes`);
    out.set(name, hex);
  }
  return out;
}

/** Is this a clearsigned OpenPGP message (the sums inside the signature)? */
export function isClearsigned(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, 64));
  return head.startsWith("-----BEGIN PGP SIGNED MESSAGE-----");
}

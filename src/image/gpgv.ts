/**
 * Debian's gpgv, the one OpenPGP verifier snf-image uses. It runs with an
 * empty private GNUPGHOME, a bounded time and bounded output; the verdict
 * comes from its machine-readable --status-fd lines (never from its human
 * text): a signature counts when gpgv reports VALIDSIG for it and no
 * signature in the file is BADSIG, EXPSIG, EXPKEYSIG or REVKEYSIG. Other
 * signatures whose key is not in the keyring (ERRSIG … 9, as on Debian's
 * files signed by several keys) are tolerated, as apt does.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { onCleanup } from "../cleanup.ts";
import { runTempDir } from "../leftovers.ts";
import { SnfError, causeOf, errorMessage } from "../errors.ts";

const GPGV_TIMEOUT_MS = 30_000;
const MAX_STATUS_BYTES = 64 * 1024;

export interface GpgvVerdict {
  /** Fingerprints (VALIDSIG) of the good signatures. */
  fingerprints: string[];
  /** Clearsigned input: the signed text as gpgv extracted it. */
  signedText?: Uint8Array;
}

export interface StatusSummary {
  valid: string[];
  bad: boolean;
  expired: boolean;
  revoked: boolean;
  missingKeys: string[];
  errors: number;
  sawSignature: boolean;
}

/** Reads `[GNUPG:] KEYWORD args` lines; anything else is ignored. */
export function summarizeStatus(text: string): StatusSummary {
  const s: StatusSummary = { valid: [], bad: false, expired: false, revoked: false, missingKeys: [], errors: 0, sawSignature: false };
  for (const line of text.split("\n")) {
    const m = /^\[GNUPG:\] ([A-Z_]+)(?: (.*))?$/.exec(line.trimEnd());
    if (!m) continue;
    const args = (m[2] ?? "").split(" ");
    switch (m[1]) {
      case "NEWSIG":
        s.sawSignature = true;
        break;
      case "VALIDSIG":
        if (/^[0-9A-F]{16,64}$/.test(args[0] ?? "")) s.valid.push(args[0]!);
        break;
      case "BADSIG":
        s.bad = true;
        break;
      case "EXPSIG":
      case "EXPKEYSIG":
        s.expired = true;
        break;
      case "REVKEYSIG":
        s.revoked = true;
        break;
      case "ERRSIG":
        s.errors++;
        if (args[5] === "9" && /^[0-9A-F]{16,64}$/.test(args[0] ?? "")) s.missingKeys.push(args[0]!);
        break;
      case "NO_PUBKEY":
        break;
      default:
        break;
    }
  }
  return s;
}

/**
 * Verify `data` against a detached `signature`, or (signature null) the
 * clearsigned `data`, with the keys of `keyring`. `shown` names the file in
 * errors. Throws one SnfError line when no acceptable signature is found.
 */
export async function gpgvVerify(o: { keyring: string; data: Uint8Array; signature: Uint8Array | null; shown: string; signal?: AbortSignal }): Promise<GpgvVerdict> {
  const dir = runTempDir("image");
  const undoDir = onCleanup(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const home = join(dir, "home");
  mkdirSync(home, { mode: 0o700 });
  const dataFile = join(dir, "data");
  const sigFile = join(dir, "sig");
  const outFile = join(dir, "out");
  writeFileSync(dataFile, o.data, { mode: 0o600 });
  const argv = ["gpgv", "--status-fd", "1", "--keyring", o.keyring];
  if (o.signature) {
    writeFileSync(sigFile, o.signature, { mode: 0o600 });
    argv.push(sigFile, dataFile);
  } else argv.push("--output", outFile, dataFile);

  let proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;
  try {
    proc = Bun.spawn(argv, {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { PATH: "/usr/bin:/bin", LC_ALL: "C", GNUPGHOME: home },
    });
  } catch (e) {
    throw new SnfError(`cannot run gpgv to check ${o.shown} (${errorMessage(e)}; install the gpgv package)`);
  }
  const undo = onCleanup("kill gpgv", () => {
    if (proc.exitCode === null) proc.kill("SIGKILL");
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, GPGV_TIMEOUT_MS);
  const onAbort = () => proc.kill("SIGKILL");
  o.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const [status] = await Promise.all([readBounded(proc.stdout, MAX_STATUS_BYTES), readBounded(proc.stderr, MAX_STATUS_BYTES), proc.exited]);
    if (o.signal?.aborted) throw new SnfError(`checking the signature of ${o.shown} interrupted`);
    if (timedOut) throw new SnfError(`gpgv did not finish checking ${o.shown} within ${GPGV_TIMEOUT_MS / 1000} s`);
    const s = summarizeStatus(status);
    const why = (what: string) => new SnfError(`${o.shown}: ${what}`);
    if (s.bad) throw why("BAD signature (the sums file or its signature was altered)");
    if (s.revoked) throw why("signed by a revoked key");
    if (s.expired) throw why("signature made by an expired key, or expired");
    if (s.valid.length === 0) {
      if (s.missingKeys.length) throw why(`signed by key ${s.missingKeys[0]} which is not in IMAGE_KEYRING ${o.keyring}`);
      if (!s.sawSignature) throw why(o.signature ? "the signature file holds no OpenPGP signature" : "no valid clearsigned signature");
      throw why(`signature could not be checked against IMAGE_KEYRING ${o.keyring} (gpgv exit status ${proc.exitCode})`);
    }
    let signedText: Uint8Array | undefined;
    if (!o.signature) {
      try {
        signedText = new Uint8Array(readFileSync(outFile));
      } catch (e) {
        throw why(`gpgv wrote no signed text (${causeOf(e)})`);
      }
    }
    return { fingerprints: s.valid, signedText };
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", onAbort);
    if (proc.exitCode === null) proc.kill("SIGKILL");
    await proc.exited;
    undo();
    rmSync(dir, { recursive: true, force: true });
    undoDir();
  }
}

/** Reads at most max bytes of a child's output (the rest is drained and dropped). */
async function readBounded(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) {
    if (n < max) chunks.push(c.subarray(0, max - n));
    n += c.length;
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/**
 * OpenPGP keys made in the test with Debian's gpg, in a temporary GNUPGHOME:
 * a signing key, its public keyring (what IMAGE_KEYRING points to), and
 * SHA256SUMS-style files signed detached or clearsigned as Debian and Ubuntu
 * publish them.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestKey {
  home: string;
  /** Binary public keyring with only this key (gpg --export). */
  keyring: string;
  fingerprint: string;
  /** Detached signature of `file` into `file + suffix` (.gpg / .sign binary, .asc armored). */
  signDetached(file: string, suffix: ".gpg" | ".sign" | ".asc"): void;
  /** Clearsign `file` in place. */
  clearsign(file: string): void;
}

function gpg(home: string, args: string[]): string {
  const p = Bun.spawnSync(["gpg", "--homedir", home, "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", "", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
  });
  if (p.exitCode !== 0) throw new Error(`gpg ${args.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}

export function makeKey(dir: string, uid: string): TestKey {
  const home = join(dir, "gnupg");
  mkdirSync(home, { recursive: true, mode: 0o700 });
  gpg(home, ["--quick-gen-key", uid, "ed25519", "sign", "never"]);
  const colons = gpg(home, ["--with-colons", "--list-keys", uid]);
  const fingerprint = /^fpr:+([0-9A-F]+):/m.exec(colons)![1]!;
  const keyring = join(dir, "keyring.gpg");
  writeFileSync(keyring, Bun.spawnSync(["gpg", "--homedir", home, "--batch", "--export", fingerprint], { stdout: "pipe" }).stdout);
  return {
    home,
    keyring,
    fingerprint,
    signDetached(file, suffix) {
      gpg(home, ["--yes", "--detach-sign", ...(suffix === ".asc" ? ["--armor"] : []), "--output", file + suffix, file]);
    },
    clearsign(file) {
      const out = `${file}.clear`;
      gpg(home, ["--yes", "--clearsign", "--output", out, file]);
      writeFileSync(file, readFileSync(out));
    },
  };
}

/** A GNU-style sums line. */
export function sumsLine(hex: string, name: string): string {
  return `${hex}  ${name}\n`;
}

export function sha256File(path: string): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(readFileSync(path));
  return h.digest("hex");
}

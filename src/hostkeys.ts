/**
 * Fresh SSH host keys for one deployment, made on the host with Debian's
 * ssh-keygen while the image is being copied: natively this costs about a
 * second, where RSA generation inside an emulated (TCG) helper costs 10 s or
 * more. The keys go to the helper only inside the 0600 parameter file; the
 * working directory is private and removed at once.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { SnfError } from "./errors.ts";

export type HostKeyType = "ed25519" | "ecdsa" | "rsa";
export interface HostKey {
  type: HostKeyType;
  privateKey: string;
  publicKey: string;
}

export const HOST_KEY_TYPES: HostKeyType[] = ["ed25519", "ecdsa", "rsa"];

export async function generateHostKeys(parentDir: string, comment: string, types: HostKeyType[] = HOST_KEY_TYPES): Promise<HostKey[]> {
  const keygen = Bun.which("ssh-keygen", { PATH: `${process.env.PATH ?? ""}:/usr/bin` });
  if (!keygen) throw new SnfError("ssh-keygen not found: install openssh-client");
  const dir = mkdtempSync(join(parentDir, "hostkeys-"));
  try {
    return await Promise.all(
      types.map(async (type) => {
        const file = join(dir, `ssh_host_${type}_key`);
        const cmd = [keygen, "-q", "-t", type, "-N", "", "-C", comment, "-f", file, ...(type === "rsa" ? ["-b", "3072"] : [])];
        const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
        const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
        if (code !== 0) throw new SnfError(`ssh-keygen -t ${type} failed: ${err.trim().split("\n").pop()}`);
        return { type, privateKey: readFileSync(file, "utf8"), publicKey: readFileSync(`${file}.pub`, "utf8") };
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

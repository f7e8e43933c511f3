/**
 * Fresh SSH host keys for one deployment, made on the host with Debian's
 * ssh-keygen while the image is being copied: natively this costs about a
 * second, where RSA generation inside an emulated (TCG) helper costs 10 s or
 * more.
 *
 * The private keys never touch a filesystem that outlives the generation:
 * each ssh-keygen runs in a private mount namespace (unshare --mount) over a
 * tmpfs mounted on its own /tmp, and the keys come back on stdout. Whatever
 * kills this process, the tmpfs disappears with the namespace's last
 * process, and setpriv --pdeathsig stops the generation itself. The keys go
 * to the helper only inside the parameter document (a memfd, see
 * src/vm/qemu.ts). Nothing of the caller's environment (Ganeti's
 * OSP_IMG_PASSWD…) reaches these tools.
 */
import { SnfError } from "./errors.ts";

export type HostKeyType = "ed25519" | "ecdsa" | "rsa";
export interface HostKey {
  type: HostKeyType;
  privateKey: string;
  publicKey: string;
}

export const HOST_KEY_TYPES: HostKeyType[] = ["ed25519", "ecdsa", "rsa"];

const TOOL_ENV = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" };
/** Runs inside the private mount namespace: $1 type, $2 bits ("" = default), $3 comment. */
const SCRIPT = [
  "set -e",
  "mount -t tmpfs -o size=1m,mode=0700,nosuid,nodev,noexec snf-hostkeys /tmp",
  'setpriv --pdeathsig KILL -- ssh-keygen -q -t "$1" ${2:+-b "$2"} -N "" -C "$3" -f /tmp/key',
  "cat /tmp/key",
  "printf '\\000'",
  "cat /tmp/key.pub",
].join("\n");

function which(name: string, pkg: string): string {
  const p = Bun.which(name, { PATH: TOOL_ENV.PATH });
  if (!p) throw new SnfError(`${name} not found: install ${pkg}`);
  return p;
}

export async function generateHostKeys(comment: string, types: HostKeyType[] = HOST_KEY_TYPES): Promise<HostKey[]> {
  which("ssh-keygen", "openssh-client");
  const setpriv = which("setpriv", "util-linux");
  const unshare = which("unshare", "util-linux");
  return await Promise.all(
    types.map(async (type) => {
      const cmd = [setpriv, "--pdeathsig", "KILL", "--", unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", SCRIPT, "snf-hostkeys", type, type === "rsa" ? "3072" : "", comment];
      const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: TOOL_ENV });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      const [privateKey, publicKey, ...rest] = out.split("\0");
      if (code !== 0 || rest.length || !privateKey?.includes("PRIVATE KEY") || !/^(?:ssh-|ecdsa-)/.test(publicKey ?? "")) {
        throw new SnfError(`ssh-keygen -t ${type} failed: ${err.trim().split("\n").pop() || `exit code ${code}`}`);
      }
      return { type, privateKey, publicKey: publicKey! };
    }),
  );
}

/** doctor: HELPER_USER exists (qemu -runas drops to it). */
import fs from "node:fs";
import { type CheckOutcome, fail, ok } from "./schema.ts";

/** uid of a user from passwd text (pure). */
export function uidFromPasswd(text: string, user: string): number | null {
  for (const l of text.split("\n")) {
    const f = l.split(":");
    if (f[0] === user && f.length >= 7) return Number(f[2]);
  }
  return null;
}

export async function lookupUid(user: string): Promise<number | null> {
  // getent also sees NSS users (LDAP, …); /etc/passwd is the fallback
  const getent = Bun.which("getent");
  if (getent) {
    const p = Bun.spawn([getent, "passwd", user], { stdin: "ignore", stdout: "pipe", stderr: "ignore" });
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    if (code === 0) return uidFromPasswd(out, user);
    if (code === 2) return null;
  }
  try {
    return uidFromPasswd(fs.readFileSync("/etc/passwd", "utf8"), user);
  } catch {
    return null;
  }
}

export async function checkHelperUser(user: string): Promise<CheckOutcome> {
  const uid = await lookupUid(user);
  if (uid === null) return fail(`HELPER_USER ${user} does not exist`, `create it (adduser --system --no-create-home ${user}) or set HELPER_USER to an unprivileged user`);
  if (uid === 0) return fail(`HELPER_USER ${user} is root: the helper VM would run with full privileges`, `set HELPER_USER to an unprivileged user such as nobody`);
  return ok(`HELPER_USER ${user} exists (uid ${uid})`);
}

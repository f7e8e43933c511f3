/**
 * AuthorizedKeys: append params.authKeys (no duplicate lines) for every user
 * in USERS (default root) to the file the image's sshd reads: the first
 * AuthorizedKeysFile entry of sshd_config (Includes followed; %h %u %%
 * expanded; relative = under the home directory; default
 * .ssh/authorized_keys). Under the home: directory 0700, file 0600, both
 * owned by the user (uid/gid from the image's passwd).
 */
import * as path from "node:path";
import type { Task, TaskContext } from "../task.ts";
import { readUsers, type PasswdEntry } from "../lib/passwd.ts";
import { isDirIn, mkdirIn, readTextIn, setMetaIn, writeFileIn } from "../lib/safepath.ts";
import { authorizedKeysFiles, expandAuthorizedKeysPath, readSshdConfig } from "../os/sshd.ts";
import { targetUsers } from "../os/users.ts";

/** Key lines worth installing (blank lines and comments dropped). */
export function keyLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** existing + the lines of `add` it does not already contain. */
export function mergeKeys(existing: string, add: string[]): string {
  const have = new Set(existing.split(/\r?\n/).map((l) => l.trim()));
  const fresh = add.filter((l) => !have.has(l));
  if (fresh.length === 0) return existing;
  const sep = existing === "" || existing.endsWith("\n") ? "" : "\n";
  return `${existing}${sep}${[...new Set(fresh)].join("\n")}\n`;
}

function installFor(ctx: TaskContext, user: PasswdEntry, token: string, keys: string[]): string {
  const file = path.posix.normalize(expandAuthorizedKeysPath(token, user));
  const home = user.home && user.home !== "/" ? path.posix.normalize(user.home).replace(/\/$/, "") : "";
  const dir = path.posix.dirname(file);
  if (home && file.startsWith(`${home}/`)) {
    if (!isDirIn(ctx.root, home)) mkdirIn(ctx.root, home, { mode: 0o700, uid: user.uid, gid: user.gid });
    mkdirIn(ctx.root, dir, { mode: 0o700, uid: user.uid, gid: user.gid });
    if (dir !== home) setMetaIn(ctx.root, dir, { mode: 0o700, uid: user.uid, gid: user.gid });
  } else {
    mkdirIn(ctx.root, dir);
  }
  const existing = readTextIn(ctx.root, file) ?? "";
  writeFileIn(ctx.root, file, mergeKeys(existing, keys), { mode: 0o600, uid: user.uid, gid: user.gid });
  return file;
}

export function authorizedKeys(ctx: TaskContext): void {
  const keys = keyLines(ctx.params.authKeys ?? "");
  if (keys.length === 0) {
    ctx.info("no authorized keys given");
    return;
  }
  if (keys.some((k) => k.includes("\0"))) throw new Error("authorized keys contain a NUL byte");
  const token = authorizedKeysFiles(readSshdConfig(ctx.root))[0]!;
  if (token.toLowerCase() === "none") {
    ctx.warn("the image's sshd_config sets AuthorizedKeysFile none; authorized keys not installed");
    return;
  }
  const all = readUsers(ctx.root);
  for (const name of targetUsers(ctx.props, ctx.os.family)) {
    const user = all.find((u) => u.name === name);
    if (!user) throw new Error(`user ${name} does not exist in the image's /etc/passwd`);
    const file = installFor(ctx, user, token, keys);
    ctx.info(`authorized keys for ${name} in ${file}`);
  }
}

export const task: Task = {
  name: "AuthorizedKeys",
  mounted: true,
  excludable: true,
  families: ["linux", "freebsd", "openbsd", "netbsd"],
  run: async (ctx) => authorizedKeys(ctx),
};

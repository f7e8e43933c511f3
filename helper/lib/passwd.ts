/**
 * The image's /etc/passwd, /etc/group and /etc/shadow: parse, look up, edit.
 * Edits keep every other line (comments, NIS "+" lines, odd entries) byte for
 * byte.
 */
import { readTextIn, writeFileIn } from "./safepath.ts";

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function dataLines(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#") && !l.startsWith("+") && !l.startsWith("-"))
    .map((l) => l.split(":"));
}

const num = (s: string | undefined): number => (s !== undefined && /^\d+$/.test(s) ? Number(s) : NaN);

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const f of dataLines(text)) {
    if (f.length < 7) continue;
    const uid = num(f[2]);
    const gid = num(f[3]);
    if (Number.isNaN(uid) || Number.isNaN(gid)) continue;
    out.push({ name: f[0]!, uid, gid, gecos: f[4]!, home: f[5]!, shell: f.slice(6).join(":") });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const f of dataLines(text)) {
    if (f.length < 3) continue;
    const gid = num(f[2]);
    if (Number.isNaN(gid)) continue;
    out.push({ name: f[0]!, gid, members: (f[3] ?? "").split(",").filter(Boolean) });
  }
  return out;
}

/** The image's users (throws if /etc/passwd is missing). */
export function readUsers(root: string): PasswdEntry[] {
  const t = readTextIn(root, "/etc/passwd");
  if (t === undefined) throw new Error("the image has no /etc/passwd");
  return parsePasswd(t);
}

export function readGroups(root: string): GroupEntry[] {
  const t = readTextIn(root, "/etc/group");
  return t === undefined ? [] : parseGroup(t);
}

/** uid of a user name (or numeric string) as the image knows it. */
export function resolveUid(users: PasswdEntry[], owner: string): number | undefined {
  if (/^\d+$/.test(owner)) return Number(owner);
  return users.find((u) => u.name === owner)?.uid;
}

export function resolveGid(groups: GroupEntry[], group: string): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  return groups.find((g) => g.name === group)?.gid;
}

/** Days since the epoch, as shadow's last-change field counts them. */
export function shadowDay(epochSeconds: number): number {
  return Math.floor(epochSeconds / 86400);
}

/**
 * Replace the hash (field 1) of `user` in a colon-separated password file
 * (shadow, BSD master.passwd) and set the `set` fields; every other field and
 * line is kept. Lines shorter than `fields` are padded, unless `exact` (then
 * only lines of exactly `fields` fields count). Throws if the user has no entry.
 */
export function setHashIn(text: string, user: string, hash: string, o: { file: string; fields: number; exact?: boolean; set: Record<number, string> }): string {
  if (/[:\n]/.test(hash)) throw new Error("password hash contains ':' or a newline");
  let found = false;
  const lines = text.split("\n").map((l) => {
    const f = l.split(":");
    if (f[0] !== user || (o.exact ? f.length !== o.fields : f.length < 2)) return l;
    while (f.length < o.fields) f.push("");
    f[1] = hash;
    for (const [i, v] of Object.entries(o.set)) f[Number(i)] = v;
    found = true;
    return f.join(":");
  });
  if (!found) throw new Error(`user ${user} has no entry in the image's ${o.file}`);
  return lines.join("\n");
}

/** Replace the hash of `user` in shadow text and set its last-change day. */
export function setShadowHash(text: string, user: string, hash: string, lastChangeDay: number): string {
  return setHashIn(text, user, hash, { file: "/etc/shadow", fields: 9, set: { 2: String(lastChangeDay) } });
}

/** The shadow hash field of `user`, or undefined. */
export function shadowHashOf(text: string, user: string): string | undefined {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === user && f.length >= 2) return f[1];
  }
  return undefined;
}

/** Edit /etc/shadow in place (atomically, owner and mode kept). */
export function updateShadow(root: string, edit: (text: string) => string): void {
  const t = readTextIn(root, "/etc/shadow");
  if (t === undefined) throw new Error("the image has no /etc/shadow");
  writeFileIn(root, "/etc/shadow", edit(t));
}

/**
 * EnforcePersonality: write the personality files into the image, last among
 * the customizations so nothing overwrites them. Owner and group are names
 * (or numbers) as the image's passwd/group know them; missing parent
 * directories are made 0750 root; an existing file is kept as
 * <path>.bak.<epoch seconds>. The final path component is never followed: a
 * symlink there is moved aside like a file, so the write lands exactly at
 * the (safepath-resolved) location.
 */
import * as path from "node:path";
import type { PersonalityFile } from "../../src/protocol.ts";
import type { Task, TaskContext } from "../task.ts";
import { readGroups, readUsers, resolveGid, resolveUid, type GroupEntry, type PasswdEntry } from "../lib/passwd.ts";
import { lexistsIn, lstatIn, mkdirIn, renameIn, statIn, writeFileIn } from "../lib/safepath.ts";
import { ensureDirCi, findCi, winPath } from "../os/windows.ts";

function ownerIds(f: PersonalityFile, users: () => PasswdEntry[], groups: () => GroupEntry[]): { uid: number; gid: number } {
  const uid = f.owner === "root" ? 0 : resolveUid(users(), f.owner);
  if (uid === undefined) throw new Error(`personality file ${f.path}: owner ${f.owner} does not exist in the image`);
  const gid = f.group === "root" ? 0 : resolveGid(groups(), f.group);
  if (gid === undefined) throw new Error(`personality file ${f.path}: group ${f.group} does not exist in the image`);
  return { uid, gid };
}

/**
 * Windows (windows, windows-legacy): the files go onto the mounted NTFS,
 * each path component matched case-insensitively (as Windows will), written
 * straight into place as the original does (no .bak, no owner or mode:
 * NTFS through ntfs-3g has no Unix ownership; the files inherit the
 * folder's ACL). The same safepath rules hold: nothing outside the root,
 * no following a link out of it, never over a directory.
 */
export function enforceWindowsPersonality(ctx: TaskContext): void {
  for (const f of ctx.params.personality) {
    const guest = path.posix.normalize(f.path);
    if (guest === "/" || f.path.endsWith("/")) throw new Error(`personality file ${f.path}: not a file path`);
    const bad = guest.split("/").find((c) => c !== "" && (/[\x00-\x1f\\:*?"<>|]/.test(c) || /[. ]$/.test(c)));
    if (bad !== undefined) throw new Error(`personality file ${JSON.stringify(f.path.slice(0, 200))}: ${JSON.stringify(bad.slice(0, 60))} is not a Windows file name`);
    const data = Buffer.from(f.contents, "base64"); // base64 checked by the protocol schema
    const parent = ensureDirCi(ctx.root, path.posix.dirname(guest));
    const target = findCi(ctx.root, guest) ?? `${parent}/${path.posix.basename(guest)}`;
    const st = statIn(ctx.root, target);
    if (st?.isDirectory()) throw new Error(`personality file ${f.path}: a directory of that name exists in the image`);
    writeFileIn(ctx.root, target, data);
    ctx.info(`wrote ${winPath(target)} (${data.length} bytes${f.owner !== "root" || f.group !== "root" ? "; owner/group do not apply on NTFS" : ""})`);
  }
}

export function enforcePersonality(ctx: TaskContext): void {
  const files = ctx.params.personality;
  if (files.length > 0 && (ctx.os.family === "windows" || ctx.os.family === "windows-legacy")) return enforceWindowsPersonality(ctx);
  if (files.length === 0) {
    ctx.info("no personality files");
    return;
  }
  let users: PasswdEntry[] | undefined;
  let groups: GroupEntry[] | undefined;
  const getUsers = () => (users ??= readUsers(ctx.root));
  const getGroups = () => (groups ??= readGroups(ctx.root));
  const ts = Math.floor(ctx.params.now ?? Date.now() / 1000);
  for (const f of files) {
    const guest = path.posix.normalize(f.path);
    if (guest === "/" || f.path.endsWith("/")) throw new Error(`personality file ${f.path}: not a file path`);
    const data = Buffer.from(f.contents, "base64"); // base64 checked by the protocol schema
    const { uid, gid } = ownerIds(f, getUsers, getGroups);
    const parent = path.posix.dirname(guest);
    mkdirIn(ctx.root, parent, { mode: 0o750 });
    const target = path.posix.join(parent, path.posix.basename(guest));
    const st = lstatIn(ctx.root, target);
    if (st?.isDirectory()) throw new Error(`personality file ${f.path}: a directory of that name exists in the image`);
    if (st) {
      let bak = `${target}.bak.${ts}`;
      for (let i = 1; lexistsIn(ctx.root, bak); i++) bak = `${target}.bak.${ts}.${i}`;
      renameIn(ctx.root, target, bak);
      ctx.info(`${f.path} existed; kept as ${path.posix.basename(bak)}`);
    }
    // The final component no longer exists, so this resolves to `target`.
    writeFileIn(ctx.root, target, data, { mode: f.mode, uid, gid });
    ctx.info(`wrote ${f.path} (${data.length} bytes, ${f.owner}:${f.group}, mode ${f.mode.toString(8)})`);
  }
}

export const task: Task = {
  name: "EnforcePersonality",
  mounted: true,
  excludable: true,
  families: ["linux", "windows", "windows-legacy", "freebsd", "openbsd", "netbsd"],
  run: async (ctx) => enforcePersonality(ctx),
};

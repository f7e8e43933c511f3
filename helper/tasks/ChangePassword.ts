/**
 * ChangePassword: set the password of every user in USERS (default root):
 * only the hash field of /etc/shadow changes (plus last-change = today);
 * aging fields stay. params.passwordHash (a crypt(3) hash, checked by the
 * protocol schema) is used verbatim; otherwise
 * params.password is hashed with libxcrypt (PASSWD_HASHING_METHOD, default
 * sha512), a fresh salt per user.
 * Windows (USERS default Administrator): a `net user` script the answer
 * file's specialize pass runs and SetupComplete.cmd wipes (os/windows.ts);
 * a password hash cannot be used there.
 */
import type { Task, TaskContext } from "../task.ts";
import { hashPassword, parseHashMethod } from "../lib/crypt.ts";
import { readUsers, setShadowHash, shadowDay, shadowHashOf, updateShadow } from "../lib/passwd.ts";
import { addCmdScript, adminPasswordValue, editSysprepInf, iniSet, LEGACY_PASSWORD_SCRIPT, legacyPasswordScript } from "../os/windows-legacy.ts";
import { readTextIn, writeFileIn } from "../lib/safepath.ts";
import { type BsdFamily, DEFAULT_HASH, isBsd, scheduleDbRebuild, setMasterPasswdHash } from "../os/bsd.ts";
import { targetUsers } from "../os/users.ts";
import { editUnattend, ensureRunSynchronous, findUnattend, PASSWORD_SCRIPT_WIN, updateSetupComplete, windowsArch, winPath, writePasswordScript } from "../os/windows.ts";

/** Windows (both kinds): the password to set, or undefined when none was given; a hash is refused. */
function windowsPassword(ctx: TaskContext): string | undefined {
  const { password, passwordHash } = ctx.params;
  if (passwordHash !== undefined) throw new Error("a password hash (img_passwd_hash) cannot be used for Windows images; give the password (img_passwd)");
  if (password === undefined) ctx.info("no password given; passwords left unchanged");
  return password;
}

export async function changeWindowsPassword(ctx: TaskContext): Promise<void> {
  const password = windowsPassword(ctx);
  if (password === undefined) return;
  const users = targetUsers(ctx.props, ctx.os.family);
  const answer = findUnattend(ctx.root);
  if (answer === undefined) throw new Error("the Windows image has no answer file to run the password script from (is InstallUnattend excluded?)");
  writePasswordScript(ctx.root, users, password);
  editUnattend(ctx.root, answer, (doc) => ensureRunSynchronous(doc, windowsArch(ctx.root), "Change user passwords", PASSWORD_SCRIPT_WIN, "ChangeAdminPassword.cmd"));
  updateSetupComplete(ctx.root);
  ctx.info(`password of ${users.join(", ")} set at first boot by ${PASSWORD_SCRIPT_WIN} (run from ${winPath(answer)})`);
}

/**
 * windows-legacy: Administrator's password as sysprep.inf AdminPassword;
 * other USERS through a `net user` script that cmdlines.txt runs (both
 * under C:\sysprep, which Windows deletes after mini-setup).
 */
export async function changeLegacyPassword(ctx: TaskContext): Promise<void> {
  const password = windowsPassword(ctx);
  if (password === undefined) return;
  const users = targetUsers(ctx.props, ctx.os.family);
  const admin = users.filter((u) => u.toLowerCase() === "administrator");
  const others = users.filter((u) => u.toLowerCase() !== "administrator");
  if (admin.length) {
    const value = adminPasswordValue(password);
    const p = editSysprepInf(ctx.root, (t) => iniSet(t, "GuiUnattended", "AdminPassword", value));
    ctx.info(`Administrator password set in ${winPath(p)}`);
  }
  if (others.length) {
    const c = addCmdScript(ctx.root, LEGACY_PASSWORD_SCRIPT, legacyPasswordScript(others, password), 0o600);
    ctx.info(`password of ${others.join(", ")} set at the end of mini-setup by ${LEGACY_PASSWORD_SCRIPT} (run from ${winPath(c)})`);
  }
}

export async function changePassword(ctx: TaskContext): Promise<void> {
  if (ctx.os.family === "windows") return changeWindowsPassword(ctx);
  if (ctx.os.family === "windows-legacy") return changeLegacyPassword(ctx);
  const { password, passwordHash } = ctx.params;
  if (password === undefined && passwordHash === undefined) {
    ctx.info("no password or password hash given; passwords left unchanged");
    return;
  }
  if (password !== undefined && passwordHash !== undefined) throw new Error("both a password and a password hash were given");
  if (isBsd(ctx.os.family)) return changeBsdPassword(ctx, ctx.os.family);
  const users = targetUsers(ctx.props, ctx.os.family);
  const known = new Set(readUsers(ctx.root).map((u) => u.name));
  const shadow = readTextIn(ctx.root, "/etc/shadow");
  if (shadow === undefined) throw new Error("the image has no /etc/shadow");
  for (const u of users) {
    if (!known.has(u)) throw new Error(`user ${u} does not exist in the image's /etc/passwd`);
    if (shadowHashOf(shadow, u) === undefined) throw new Error(`user ${u} has no entry in the image's /etc/shadow`);
  }
  const method = passwordHash === undefined ? parseHashMethod(ctx.props.get("PASSWD_HASHING_METHOD")) : undefined;
  const hashes = new Map<string, string>();
  for (const u of users) hashes.set(u, passwordHash ?? (await hashPassword(password!, method!, ctx.run)));
  const day = shadowDay(ctx.params.now ?? Date.now() / 1000);
  updateShadow(ctx.root, (text) => {
    let t = text;
    for (const u of users) t = setShadowHash(t, u, hashes.get(u)!, day);
    return t;
  });
  ctx.info(`password set for ${users.join(", ")}${method ? ` (${method})` : " (given hash)"}`);
}

/**
 * *BSD: the hash field of /etc/master.passwd (change = 0, the rest kept),
 * with the original's per-OS default method (FreeBSD sha512, OpenBSD
 * bcrypt, NetBSD sha1crypt). pwd.db/spwd.db are dropped and rebuilt by the
 * guest's own pwd_mkdb at first boot (rc.local shim, as the original did).
 */
async function changeBsdPassword(ctx: TaskContext, family: BsdFamily): Promise<void> {
  const { password, passwordHash } = ctx.params;
  const users = targetUsers(ctx.props, ctx.os.family);
  const text = readTextIn(ctx.root, "/etc/master.passwd");
  if (text === undefined) throw new Error("the image has no /etc/master.passwd");
  const method = passwordHash === undefined ? parseHashMethod(ctx.props.get("PASSWD_HASHING_METHOD"), DEFAULT_HASH[family]) : undefined;
  let t = text;
  for (const u of users) t = setMasterPasswdHash(t, u, passwordHash ?? (await hashPassword(password!, method!, ctx.run)));
  writeFileIn(ctx.root, "/etc/master.passwd", t);
  const removed = scheduleDbRebuild(ctx.root);
  ctx.info(`password set for ${users.join(", ")} in /etc/master.passwd${method ? ` (${method})` : " (given hash)"}; ${removed.length ? `${removed.join(", ")} removed, ` : ""}pwd_mkdb runs at first boot (rc.local)`);
}

export const task: Task = {
  name: "ChangePassword",
  mounted: true,
  excludable: true,
  families: ["linux", "windows", "windows-legacy", "freebsd", "openbsd", "netbsd"],
  run: changePassword,
};

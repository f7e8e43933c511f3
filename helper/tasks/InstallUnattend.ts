/**
 * InstallUnattend (windows, NT 6.x+): make sure the image has an answer file
 * for the passes after sysprep generalize, and the first-boot cleanup.
 * os_answer_file (fetched by the host) becomes C:\unattend.xml and the
 * image's own answer files are removed (the original's IGNORE_UNATTEND=yes);
 * else the image's own answer file is kept unless IGNORE_UNATTEND; else a
 * generated one (WINDOWS_TIMEZONE) becomes C:\unattend.xml.
 * os_product_key → ProductKey. AssignHostname and ChangePassword then edit
 * the same file (os/windows.ts).
 * windows-legacy (XP/2003): the same choices for C:\sysprep\sysprep.inf
 * (os/windows-legacy.ts); the image must be sealed by sysprep (SYSTEM hive:
 * Setup\SystemSetupInProgress and MiniSetupInProgress = 1).
 */
import type { Task, TaskContext } from "../task.ts";
import { resolveInRoot, statIn, writeFileIn } from "../lib/safepath.ts";
import { Hive } from "../lib/hive.ts";
import { editSysprepInf, findSysprepInf, fixInstallFilesPath, generatedSysprepInf, iniSet, installSysprepInf, timezoneIndex } from "../os/windows-legacy.ts";
import {
  INSTALLED_UNATTEND,
  checkDeployable,
  editUnattend,
  ensureDirCi,
  findCi,
  findUnattend,
  generatedUnattend,
  removeUnattends,
  setProductKey,
  parseUnattend,
  spellCi,
  SYSTEM_HIVE,
  SNF_SCRIPTS_DIR,
  updateSetupComplete,
  windowsArch,
  winPath,
} from "../os/windows.ts";

/** os_answer_file's bytes (the host fetched them), or undefined. */
export function givenAnswerFile(ctx: TaskContext): Buffer | undefined {
  const b64 = ctx.params.answerFile;
  if (b64 === undefined) return undefined;
  const bytes = Buffer.from(b64, "base64");
  if (bytes.length === 0) throw new Error("os_answer_file is empty");
  return bytes;
}

/** os_product_key, checked and upper-cased by the protocol schema. */
const productKey = (ctx: TaskContext): string | undefined => ctx.params.osProductKey;

export async function installUnattend(ctx: TaskContext): Promise<void> {
  if (ctx.os.family === "windows-legacy") return installSysprepInfTask(ctx);
  const root = ctx.root;
  for (const w of checkDeployable(root)) ctx.warn(w);
  const key = productKey(ctx);
  const arch = windowsArch(root);
  const given = givenAnswerFile(ctx);
  let answer = findUnattend(root);
  if (given !== undefined) {
    parseUnattend(given, "os_answer_file");
    if (answer !== undefined) ctx.info(`os_answer_file replaces the image's answer files: removed ${removeUnattends(root).map(winPath).join(", ")}`);
    answer = spellCi(root, INSTALLED_UNATTEND);
    writeFileIn(root, answer, given);
    ctx.info(`installed os_answer_file (${given.length} bytes) as ${winPath(answer)}`);
  } else if (answer !== undefined && !ctx.props.bool("IGNORE_UNATTEND")) {
    ctx.warn(`using the answer file found in the image: ${winPath(answer)}`);
  } else {
    if (answer !== undefined) ctx.info(`IGNORE_UNATTEND: removed ${removeUnattends(root).map(winPath).join(", ")}`);
    answer = spellCi(root, INSTALLED_UNATTEND);
    writeFileIn(root, answer, generatedUnattend(ctx.params.windowsTimezone));
    ctx.info(`installed a generated answer file as ${winPath(answer)} (time zone ${ctx.params.windowsTimezone})`);
  }
  editUnattend(root, answer, (doc) => {
    if (key !== undefined) setProductKey(doc, arch, key);
  });
  ensureDirCi(root, SNF_SCRIPTS_DIR);
  const sc = updateSetupComplete(root);
  ctx.info(`${arch} image; ${key !== undefined ? "product key set; " : ""}first-boot cleanup in ${winPath(sc)}`);
}

/** Refuse an XP/2003 image that sysprep did not seal (mini-setup would not run our answer file). */
function checkSealed(root: string): void {
  const hivePath = findCi(root, SYSTEM_HIVE);
  if (hivePath === undefined || !statIn(root, hivePath)?.isFile()) throw new Error("the image has no Windows\\System32\\config\\SYSTEM hive");
  const h = Hive.open(resolveInRoot(root, hivePath));
  try {
    const setup = h.getDword("Setup", "SystemSetupInProgress");
    const mini = h.getDword("Setup", "MiniSetupInProgress");
    if (setup !== 1 || mini !== 1)
      throw new Error(`the Windows XP/2003 image was not sealed with sysprep (SYSTEM Setup\\SystemSetupInProgress=${setup ?? "missing"}, MiniSetupInProgress=${mini ?? "missing"}); run sysprep -mini -reseal before taking the image`);
  } finally {
    h.close();
  }
}

async function installSysprepInfTask(ctx: TaskContext): Promise<void> {
  const root = ctx.root;
  checkSealed(root);
  const key = productKey(ctx);
  const given = givenAnswerFile(ctx);
  const found = findSysprepInf(root);
  let p: string;
  if (given !== undefined) {
    if (given.includes(0)) throw new Error("os_answer_file is not a text file (a windows-legacy image needs a sysprep.inf)");
    p = installSysprepInf(root, given.toString("latin1"));
    ctx.info(`installed os_answer_file (${given.length} bytes) as ${winPath(p)}`);
  } else if (found !== undefined && !ctx.props.bool("IGNORE_UNATTEND")) {
    ctx.warn(`using the sysprep.inf found in the image: ${winPath(found)}`);
  } else {
    const tz = ctx.params.windowsTimezone;
    const idx = timezoneIndex(tz);
    if (idx === undefined) ctx.warn(`WINDOWS_TIMEZONE ${tz} has no known sysprep.inf index; the generated sysprep.inf names no time zone`);
    p = installSysprepInf(root, generatedSysprepInf(idx));
    ctx.info(`${found !== undefined ? "IGNORE_UNATTEND: replaced the image's sysprep.inf with" : "installed"} a generated ${winPath(p)}${idx ? ` (time zone ${tz} = ${idx})` : ""}`);
  }
  p = editSysprepInf(root, (t) => {
    let out = fixInstallFilesPath(t);
    if (key !== undefined) out = iniSet(out, "UserData", "ProductKey", `"${key}"`);
    return out;
  });
  ctx.info(`windows-legacy image; ${key !== undefined ? "product key set in " : "answer file "}${winPath(p)}`);
}

export const task: Task = {
  name: "InstallUnattend",
  mounted: true,
  excludable: true,
  cloudInitSkip: true,
  families: ["windows", "windows-legacy"],
  run: installUnattend,
};

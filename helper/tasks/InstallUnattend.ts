/**
 * InstallUnattend (windows, NT 6.x+): make sure the image has an answer file
 * for the passes after sysprep generalize, and the first-boot cleanup.
 * The image's own answer file is kept unless IGNORE_UNATTEND; otherwise a
 * generated one becomes C:\unattend.xml. os_product_key → ProductKey.
 * AssignHostname and ChangePassword then edit the same file (os/windows.ts).
 */
import type { Task, TaskContext } from "../task.ts";
import { writeFileIn } from "../lib/safepath.ts";
import {
  INSTALLED_UNATTEND,
  checkDeployable,
  checkProductKey,
  editUnattend,
  ensureDirCi,
  findUnattend,
  generatedUnattend,
  removeUnattends,
  setProductKey,
  spellCi,
  SNF_SCRIPTS_DIR,
  updateSetupComplete,
  windowsArch,
  winPath,
} from "../os/windows.ts";

export async function installUnattend(ctx: TaskContext): Promise<void> {
  const root = ctx.root;
  for (const w of checkDeployable(root)) ctx.warn(w);
  const key = ctx.params.osProductKey === undefined || ctx.params.osProductKey.trim() === "" ? undefined : checkProductKey(ctx.params.osProductKey);
  const arch = windowsArch(root);
  let answer = findUnattend(root);
  if (answer !== undefined && !ctx.props.bool("IGNORE_UNATTEND")) {
    ctx.warn(`using the answer file found in the image: ${winPath(answer)}`);
  } else {
    if (answer !== undefined) ctx.info(`IGNORE_UNATTEND: removed ${removeUnattends(root).map(winPath).join(", ")}`);
    answer = spellCi(root, INSTALLED_UNATTEND);
    writeFileIn(root, answer, generatedUnattend());
    ctx.info(`installed a generated answer file as ${winPath(answer)}`);
  }
  editUnattend(root, answer, (doc) => {
    if (key !== undefined) setProductKey(doc, arch, key);
  });
  ensureDirCi(root, SNF_SCRIPTS_DIR);
  const sc = updateSetupComplete(root);
  ctx.info(`${arch} image; ${key !== undefined ? "product key set; " : ""}first-boot cleanup in ${winPath(sc)}`);
}

export const task: Task = {
  name: "InstallUnattend",
  mounted: true,
  excludable: true,
  cloudInitSkip: true,
  families: ["windows"],
  run: installUnattend,
};

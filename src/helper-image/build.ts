/**
 * Build the helper VM image (HELPER_DIR): `vmlinux` (PVH ELF), `initrd.cpio`
 * (small uncompressed initramfs with shim 1), `tools.img` (read-only ext4
 * with the helper executable, the tools and shim 2) and `manifest.json`.
 * Everything is built in a temp dir next to the output and swapped into
 * place atomically, so a failed build never leaves a half helper.
 */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { onCleanup } from "../cleanup.ts";
import { SnfError } from "../errors.ts";
import { type HelperManifest, PROTOCOL_VERSION, TOOLS_DISK_SERIAL, summarizeIssues } from "../protocol.ts";
import initShim from "../../helper/boot/init.sh" with { type: "text" };
import init2Shim from "../../helper/boot/init2.sh" with { type: "text" };
import { buildInitramfs } from "./initramfs.ts";
import { DEFAULT_KERNEL_CACHE, prepareKernel } from "./kernel.ts";
import { HELPER_FILES, MANIFEST_FILE } from "./load.ts";
import { BOOT_MODULES, DEMAND_MODULES, resolveModules } from "./modules.ts";
import { swapDirs } from "./swap.ts";
import { makeToolsImage, stageTools } from "./tools-disk.ts";
import { prepareUfsModule } from "./ufs.ts";

export interface BuildHelperOptions {
  outDir: string;
  helperBinary: string;
  version: string;
  kernelCacheDir?: string;
  log?: (line: string) => void;
}

const OptionsSchema = v.object({
  outDir: v.pipe(v.string(), v.minLength(1)),
  helperBinary: v.pipe(v.string(), v.minLength(1)),
  version: v.pipe(v.string(), v.minLength(1), v.maxLength(100)),
  kernelCacheDir: v.optional(v.pipe(v.string(), v.minLength(1))),
});

const BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"];

function findStaticBusybox(): string {
  for (const p of BUSYBOX_CANDIDATES) {
    if (!fs.existsSync(p)) continue;
    const head = Buffer.alloc(4096);
    const fd = fs.openSync(p, "r");
    try {
      fs.readSync(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
    // a static ELF has no PT_INTERP, so no ".so" interpreter path near the start
    if (!head.includes("ld-linux")) return p;
  }
  throw new SnfError("static busybox not found: install busybox-static");
}

function checkHelperBinary(p: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new SnfError(`helper executable ${p} not found`);
  }
  if (!st.isFile()) throw new SnfError(`helper executable ${p} is not a file`);
  const head = Buffer.alloc(4);
  const fd = fs.openSync(p, "r");
  try {
    fs.readSync(fd, head, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.readUInt32BE(0) !== 0x7f454c46) throw new SnfError(`helper executable ${p} is not an ELF executable`);
}

export function renderShim(text: string): string {
  return text.replaceAll("@TOOLS_DISK_SERIAL@", TOOLS_DISK_SERIAL);
}

export async function buildHelperImage(o: BuildHelperOptions): Promise<HelperManifest> {
  const parsed = v.safeParse(OptionsSchema, { ...o, log: undefined });
  if (!parsed.success) throw new SnfError(`bad helper build options: ${summarizeIssues(parsed.issues)}`);
  const log = o.log ?? (() => {});
  const outDir = path.resolve(o.outDir);
  checkHelperBinary(o.helperBinary);
  const busybox = findStaticBusybox();
  const t0 = performance.now();
  const step = (what: string) => log(`${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);

  const kernel = await prepareKernel(o.kernelCacheDir ?? DEFAULT_KERNEL_CACHE, log);
  step(`kernel ${kernel.version} ready from ${kernel.source}`);
  const ufs = await prepareUfsModule(kernel.version, o.kernelCacheDir ?? DEFAULT_KERNEL_CACHE, log);
  if ("missing" in ufs) log(`no UFS write support, *BSD images will fail: ${ufs.missing}`);
  else step(`ufs.ko with write support (linux-source ${ufs.sourceVersion}) from ${ufs.source}`);

  fs.mkdirSync(path.dirname(outDir), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(outDir), `.${path.basename(outDir)}.tmp-`));
  const undo = onCleanup(`remove ${tmp}`, () => fs.rmSync(tmp, { recursive: true, force: true }));
  try {
    const bootModules = await resolveModules(BOOT_MODULES, kernel.modRoot, kernel.version);
    const demandModules = await resolveModules([...BOOT_MODULES, ...DEMAND_MODULES], kernel.modRoot, kernel.version);

    const cpio = await buildInitramfs({
      busybox,
      init: renderShim(initShim),
      modRoot: kernel.modRoot,
      kernelVersion: kernel.version,
      bootModules,
    });
    await Bun.write(path.join(tmp, HELPER_FILES.initrd), cpio);
    step(`initramfs ${(cpio.length / 2 ** 20).toFixed(1)} MiB`);

    const stage = path.join(tmp, "stage");
    await stageTools({
      stage,
      helperBinary: o.helperBinary,
      busybox,
      init2: renderShim(init2Shim),
      modRoot: kernel.modRoot,
      kernelVersion: kernel.version,
      modules: demandModules,
      ufsModule: "missing" in ufs ? undefined : ufs,
      log,
    });
    await makeToolsImage(stage, path.join(tmp, HELPER_FILES.tools));
    fs.rmSync(stage, { recursive: true, force: true });
    step(`tools disk ${(fs.statSync(path.join(tmp, HELPER_FILES.tools)).size / 2 ** 20).toFixed(0)} MiB`);

    fs.copyFileSync(kernel.vmlinux, path.join(tmp, HELPER_FILES.kernel));
    const manifest: HelperManifest = {
      protocol: PROTOCOL_VERSION,
      version: o.version,
      kernel: kernel.version,
      built: new Date().toISOString(),
      files: { ...HELPER_FILES },
      ...("missing" in ufs ? {} : { ufsWrite: ufs.sourceVersion }),
    };
    fs.writeFileSync(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    for (const f of fs.readdirSync(tmp)) fs.chmodSync(path.join(tmp, f), 0o644);
    fs.chmodSync(tmp, 0o755);

    swapDirs(tmp, outDir);
    step(`helper image written to ${outDir}`);
    return manifest;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    undo();
  }
}

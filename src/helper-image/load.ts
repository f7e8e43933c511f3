/** Locate and check a built helper image (HELPER_DIR). */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { SnfError } from "../errors.ts";
import { type HelperManifest, HelperManifestSchema, PROTOCOL_VERSION } from "../protocol.ts";

export const MANIFEST_FILE = "manifest.json";
export const HELPER_FILES = { kernel: "vmlinux", initrd: "initrd.cpio", tools: "tools.img" } as const;

const REBUILD = "run `snf-image helper build`";

export function loadHelperImage(dir: string): { manifest: HelperManifest; kernel: string; initrd: string; tools: string } {
  const notFound = () => new SnfError(`helper image not found in ${dir}: ${REBUILD}`);
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, MANIFEST_FILE), "utf8");
  } catch {
    throw notFound();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SnfError(`helper image in ${dir} has a corrupt ${MANIFEST_FILE}: ${REBUILD}`);
  }
  const r = v.safeParse(HelperManifestSchema, json);
  if (!r.success) throw new SnfError(`helper image in ${dir} has a corrupt ${MANIFEST_FILE}: ${REBUILD}`);
  const manifest = r.output;
  if (manifest.protocol !== PROTOCOL_VERSION) {
    throw new SnfError(`helper image in ${dir} speaks protocol ${manifest.protocol}, this snf-image needs ${PROTOCOL_VERSION}: ${REBUILD}`);
  }
  const file = (name: string) => {
    if (name.includes("/") || name.startsWith(".")) throw new SnfError(`helper image in ${dir} has a corrupt ${MANIFEST_FILE}: ${REBUILD}`);
    const p = path.join(dir, name);
    if (!fs.statSync(p, { throwIfNoEntry: false })?.isFile()) throw notFound();
    return p;
  };
  return { manifest, kernel: file(manifest.files.kernel), initrd: file(manifest.files.initrd), tools: file(manifest.files.tools) };
}

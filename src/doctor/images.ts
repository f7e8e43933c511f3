/** doctor: IMAGE_DIR exists, is readable, and which images it holds. */
import fs from "node:fs";
import path from "node:path";
import { errorMessage } from "../errors.ts";
import { detectCompression, MAGIC_BYTES } from "../image/format.ts";
import { isQcow2 } from "../image/qcow2.ts";
import { readImageMeta } from "../image/meta.ts";
import { IMAGE_FORMATS } from "../protocol.ts";
import { type CheckOutcome, fail, type ImageEntry, ok, warn } from "./schema.ts";

const FORMAT_SUFFIX = new RegExp(`\\.(${IMAGE_FORMATS.join("|")})$`);
const MAX_LISTED = 200;

/** Format from the file name (NAME.diskdump …), as `img_format` would name it. Pure. */
export function formatFromName(name: string): ImageEntry["format"] {
  const m = FORMAT_SUFFIX.exec(name);
  return m ? (m[1] as ImageEntry["format"]) : null;
}

function head(file: string): Uint8Array {
  const buf = new Uint8Array(MAGIC_BYTES);
  const fd = fs.openSync(file, "r");
  try {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

export async function listImages(dir: string): Promise<{ images: ImageEntry[]; unreadable: string[] }> {
  const images: ImageEntry[] = [];
  const unreadable: string[] = [];
  const names = fs.readdirSync(dir).sort();
  const real = fs.realpathSync(dir);
  for (const name of names) {
    // Hidden files and the files that travel with an image (snf-image-creator's .meta, .md5sum, .variant).
    if (name.startsWith(".") || /\.(meta|md5sum|variant)$/.test(name)) continue;
    const p = path.join(dir, name);
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st?.isFile()) continue;
    let compression: ImageEntry["compression"] = null;
    let qcow2 = false;
    try {
      const h = head(p);
      compression = await detectCompression(h);
      qcow2 = isQcow2(h);
    } catch {
      unreadable.push(name);
      continue;
    }
    // A qcow2 is one whatever its name says (create converts it by its magic too).
    const entry: ImageEntry = { name, format: qcow2 ? "qcow2" : formatFromName(name), compression, sizeBytes: st.size };
    try {
      const props = readImageMeta(path.join(real, name), real);
      if (props) entry.properties = props;
    } catch (e) {
      entry.metaError = errorMessage(e);
    }
    images.push(entry);
    if (images.length >= MAX_LISTED) break;
  }
  return { images, unreadable };
}

/** KEY=value … of a .meta file, one bounded line (keys are [A-Z0-9_]; values quoted as JSON). */
function metaSummary(p: Record<string, string>): string {
  const s = Object.entries(p)
    .map(([k, val]) => `${k}=${/^[\w.:/+-]*$/.test(val) ? val : JSON.stringify(val).replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}`)
    .join(" ");
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}

export function humanSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i ? x.toFixed(1) : x} ${units[i]}`;
}

export async function checkImageDir(dir: string): Promise<CheckOutcome> {
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) return fail(`IMAGE_DIR ${dir} does not exist`, `mkdir -p ${dir} and put images there, or set IMAGE_DIR in the config`);
  if (!st.isDirectory()) return fail(`IMAGE_DIR ${dir} is not a directory`, `set IMAGE_DIR to a directory of images`);
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    return fail(`IMAGE_DIR ${dir} is not readable`, `chmod a+rx ${dir} (it is read as root by create)`);
  }
  let listed: Awaited<ReturnType<typeof listImages>>;
  try {
    listed = await listImages(dir);
  } catch (e) {
    return fail(`IMAGE_DIR ${dir} cannot be listed: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`, `chmod a+rx ${dir}`);
  }
  const { images, unreadable } = listed;
  const details = images.map(
    (i) =>
      `${i.name}: ${i.format ?? `unknown format (name it NAME.${IMAGE_FORMATS.join(", NAME.")})`}, ${i.compression ?? "uncompressed"}, ${humanSize(i.sizeBytes)}` +
      (i.metaError ? `; BAD METADATA: ${i.metaError}` : i.properties ? `; metadata: ${metaSummary(i.properties)}` : ""),
  );
  for (const u of unreadable) details.push(`${u}: not readable`);
  const badMeta = images.filter((i) => i.metaError);
  if (badMeta.length) return fail(badMeta[0]!.metaError!, `fix or remove the .meta file(s) of ${badMeta.map((i) => i.name).slice(0, 3).join(", ")} in ${dir} (snf-image-creator's format: {"properties": {"KEY": "value"}})`, { details, images });
  if (unreadable.length) return fail(`IMAGE_DIR ${dir}: ${unreadable.length} image file(s) not readable: ${unreadable.slice(0, 3).join(", ")}`, `chmod a+r the image files in ${dir}`, { details, images });
  if (!images.length) return warn(`IMAGE_DIR ${dir} holds no images`, `copy images there as NAME.diskdump (or use http(s):// img_id)`, { details, images });
  const named = images.filter((i) => i.format).length;
  return ok(`IMAGE_DIR ${dir} holds ${images.length} image file(s) (${named} named by format)`, { details, images });
}

/**
 * Image metadata: for a local image file F, the file `F.meta` next to it in
 * snf-image-creator's format — a JSON object whose `properties` object holds
 * the image properties (OSFAMILY, ROOT_PARTITION, USERS, DESCRIPTION, …,
 * values strings) and whose `disk-format` names the format ("diskdump").
 * They are defaults: host-set properties, img_properties and inst_properties
 * all take precedence.
 *
 * The file is read like the image: inside IMAGE_DIR (the image's real
 * directory, no symlink as the last component), a regular file of at most
 * META_MAX_BYTES. Anything wrong with it is one SnfError line.
 */
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { SnfError, errnoOf, causeOf } from "../errors.ts";
import { O_CLOEXEC } from "../disk/libc.ts";
import { propertiesOf } from "../params.ts";

export const META_SUFFIX = ".meta";
export const META_MAX_BYTES = 64 * 1024;

const MetaSchema = v.looseObject({
  // Checked by propertiesOf (as img_properties are): a record schema would turn [] into {}.
  properties: v.unknown(),
  "disk-format": v.optional(v.string("disk-format must be a string")),
});

/** Properties from the text of a .meta file; `shown` names the file in errors. Pure. */
export function parseImageMeta(text: string, shown: string): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SnfError(`image metadata ${shown} is not valid JSON`);
  }
  const r = v.safeParse(MetaSchema, json);
  if (!r.success) {
    const i = r.issues[0];
    const where = v.getDotPath(i);
    throw new SnfError(`image metadata ${shown}: ${where ? `${where}: ` : ""}${i.message.split("\n")[0]} (expected {"properties": {"KEY": "value", …}})`);
  }
  const problems: string[] = [];
  const props = propertiesOf("properties", r.output.properties, problems);
  if (problems.length) throw new SnfError(`image metadata ${shown}: ${problems[0]}`);
  return props;
}

/**
 * The metadata of the image file at `realImage` (a real path inside the real
 * IMAGE_DIR `dir`): its properties, or null when there is no .meta file.
 */
export function readImageMeta(realImage: string, dir: string): Record<string, string> | null {
  const file = realImage + META_SUFFIX;
  const shown = path.relative(dir, file);
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | O_CLOEXEC | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = errnoOf(e);
    if (code === "ENOENT") return null;
    throw new SnfError(`image metadata ${shown} cannot be opened (${code === "ELOOP" ? "a symlink" : causeOf(e)})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SnfError(`image metadata ${shown} is not a regular file`);
    if (st.size > META_MAX_BYTES) throw new SnfError(`image metadata ${shown} is larger than ${META_MAX_BYTES} bytes`);
    const buf = Buffer.alloc(st.size);
    const n = fs.readSync(fd, buf, 0, st.size, 0);
    return parseImageMeta(buf.subarray(0, n).toString("utf8"), shown);
  } finally {
    fs.closeSync(fd);
  }
}

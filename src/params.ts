/**
 * The 12 OS parameters of snf-image: where each value comes from (config
 * file < OS parameters < config_url), and a full check of every value that
 * reports all problems at once, one line each.
 */
import * as v from "valibot";
import { OS_PARAMETERS, type Config } from "./config.ts";
import { SnfError } from "./errors.ts";
import { fetchDocument, fetchLimits, redactUrl } from "./net/fetch.ts";
import { CRYPT_HASH, IMAGE_FORMATS, PRODUCT_KEY, isBase64, type ImageFormat, type PersonalityFile } from "./protocol.ts";

export type OsParamName = (typeof OS_PARAMETERS)[number];
export type RawParams = Partial<Record<OsParamName, string>>;

export const PARAMETER_HELP: Record<OsParamName, string> = {
  img_id: "The image: NAME or local://NAME in IMAGE_DIR, an http(s):// URL, or null (required)",
  img_format: "The image format: diskdump, extdump, ntfsdump or qcow2 (required)",
  img_passwd: "The password to set for the image's users (USERS property, default root)",
  img_passwd_hash: "An already hashed password (crypt format) to set instead of img_passwd",
  img_properties: 'JSON object of image properties, e.g. {"OSFAMILY":"linux","ROOT_PARTITION":"1"}',
  img_personality: "JSON list of files to inject: [{path, contents(base64), owner, group, mode}]",
  inst_properties: "JSON object of properties that override img_properties for this instance",
  auth_keys: "OpenSSH authorized_keys lines to add for each user in USERS",
  config_url: "http(s) URL of a JSON object (at most CONFIG_URL_MAX_BYTES) whose keys override these parameters",
  cloud_userdata: "base64 cloud-init user-data (used with the CLOUD_INIT property)",
  os_product_key: "Windows product key (XXXXX-XXXXX-XXXXX-XXXXX-XXXXX)",
  os_answer_file: "http(s) URL of a Windows answer file (unattend.xml; sysprep.inf for windows-legacy)",
};

/** Parameters after resolution and validation. */
export interface DeployParams {
  imgId: string;
  imgFormat: ImageFormat;
  password?: string;
  passwordHash?: string;
  imgProperties: Record<string, string>;
  instProperties: Record<string, string>;
  personality: PersonalityFile[];
  authKeys?: string;
  cloudUserdata?: string;
  osProductKey?: string;
  osAnswerFile?: string;
  configUrl?: string;
}

/** Merge config presets and OSP_* values (set-but-empty counts as defined). */
export function mergeParams(config: Pick<Config, "presets">, osp: Record<string, string>): RawParams {
  const out: RawParams = {};
  for (const name of OS_PARAMETERS) {
    if (name in osp) out[name] = osp[name];
    else if (name in config.presets) out[name] = config.presets[name];
  }
  return out;
}

/** Apply a config_url document: keys (case-insensitive) naming a parameter override it. */
export function applyConfigDocument(base: RawParams, doc: unknown, source: string): { params: RawParams; ignored: string[] } {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new SnfError(`config_url ${source}: not a JSON object`);
  }
  const out: RawParams = { ...base };
  const ignored: string[] = [];
  for (const [k, val] of Object.entries(doc as Record<string, unknown>)) {
    const name = k.toLowerCase() as OsParamName;
    if (!(OS_PARAMETERS as readonly string[]).includes(name) || name === "config_url") {
      ignored.push(k);
      continue;
    }
    if (val === null || val === undefined) continue;
    // JSON-valued parameters may be given as objects in the document.
    out[name] = typeof val === "string" ? val : JSON.stringify(val);
  }
  return { params: out, ignored };
}

const SSH_KEY_LINE = /^(?:[^\s"]+(?:="[^"]*")?(?:,[^\s"]+(?:="[^"]*")?)*\s+)?(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)\s+[A-Za-z0-9+/]+=*(\s.*)?$/;

function parseProperties(name: string, raw: string, problems: string[]): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    problems.push(`${name}: not valid JSON`);
    return {};
  }
  return propertiesOf(name, json, problems);
}

/**
 * Image properties from parsed JSON (img_properties, inst_properties, the
 * `properties` of an image's .meta file): names upper-cased, values strings.
 */
export function propertiesOf(name: string, json: unknown, problems: string[]): Record<string, string> {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    problems.push(`${name}: must be a JSON object like {"KEY": "value"}`);
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(json as Record<string, unknown>)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
      problems.push(`${name}: property name ${JSON.stringify(k)} is not a valid name`);
      continue;
    }
    if (val !== null && typeof val === "object") {
      problems.push(`${name}: property ${k} must be a string, number or boolean`);
      continue;
    }
    out[k.toUpperCase()] = val === null ? "" : String(val);
  }
  return out;
}

const PersonalityEntry = v.object({
  path: v.pipe(v.string("path must be a string"), v.startsWith("/", "path must be absolute"), v.maxLength(4096, "path is too long")),
  contents: v.pipe(v.string("contents must be a base64 string"), v.check(isBase64, "contents is not base64")),
  owner: v.optional(v.pipe(v.string("owner must be a name"), v.regex(/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/, "owner is not a user name"))),
  group: v.optional(v.pipe(v.string("group must be a name"), v.regex(/^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/, "group is not a group name"))),
  mode: v.optional(
    v.pipe(
      v.union([v.number(), v.pipe(v.string(), v.regex(/^\d+$/), v.transform(Number))], "mode must be a number"),
      v.integer("mode must be a whole number"),
      v.minValue(0, "mode must be between 0 and 4095 (decimal, e.g. 384 for 0600)"),
      v.maxValue(0o7777, "mode must be between 0 and 4095 (decimal, e.g. 384 for 0600)"),
    ),
  ),
});

function parsePersonality(raw: string, problems: string[]): PersonalityFile[] {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    problems.push("img_personality: not valid JSON");
    return [];
  }
  if (!Array.isArray(json)) {
    problems.push("img_personality: must be a JSON list of {path, contents, owner, group, mode}");
    return [];
  }
  const out: PersonalityFile[] = [];
  json.forEach((entry, i) => {
    const r = v.safeParse(PersonalityEntry, entry);
    if (!r.success) {
      for (const issue of r.issues) problems.push(`img_personality[${i}]: ${issue.message}`);
      return;
    }
    const segs = r.output.path.split("/");
    if (segs.includes("..")) {
      problems.push(`img_personality[${i}]: path must not contain '..'`);
      return;
    }
    if (r.output.path.endsWith("/")) {
      problems.push(`img_personality[${i}]: path names a directory`);
      return;
    }
    out.push({
      path: r.output.path,
      contents: r.output.contents.replace(/\s/g, ""),
      owner: r.output.owner ?? "root",
      group: r.output.group ?? "root",
      mode: r.output.mode ?? 0o440,
    });
  });
  return out;
}

function checkUrl(name: string, raw: string, schemes: string[], problems: string[]): void {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    problems.push(`${name}: not a URL`);
    return;
  }
  if (!schemes.includes(u.protocol.replace(/:$/, ""))) problems.push(`${name}: scheme must be one of ${schemes.join(", ")}`);
}

/**
 * Check every parameter; return the typed result and every problem found.
 * With `forVerify`, img_id/img_format may be missing when config_url is set
 * (they may come from the document); everything that is given is still checked.
 */
export function checkParams(raw: RawParams, o: { forVerify?: boolean } = {}): { params: DeployParams; problems: string[] } {
  const problems: string[] = [];
  const defined = (k: OsParamName) => raw[k] !== undefined;
  const val = (k: OsParamName) => raw[k] ?? "";
  const configUrl = val("config_url") || undefined;
  const requireCore = !(o.forVerify && configUrl);

  if (val("img_id") === "") {
    if (requireCore) problems.push("img_id: missing (the image to deploy)");
  } else if (/[\0\n]/.test(val("img_id"))) problems.push("img_id: contains a control character");

  const fmt = val("img_format").toLowerCase();
  if (fmt === "") {
    if (requireCore) problems.push(`img_format: missing (one of ${IMAGE_FORMATS.join(", ")})`);
  } else if (!(IMAGE_FORMATS as readonly string[]).includes(fmt)) problems.push(`img_format: ${JSON.stringify(val("img_format"))} is not one of ${IMAGE_FORMATS.join(", ")}`);

  if (defined("img_passwd") && defined("img_passwd_hash")) problems.push("img_passwd and img_passwd_hash: give only one of them");
  if (defined("img_passwd_hash") && !CRYPT_HASH.test(val("img_passwd_hash"))) problems.push("img_passwd_hash: not a crypt(3) hash (e.g. $6$salt$hash or $y$…)");
  if (/[\0\n]/.test(val("img_passwd"))) problems.push("img_passwd: contains a newline or NUL");

  const imgProperties = defined("img_properties") && val("img_properties").trim() !== "" ? parseProperties("img_properties", val("img_properties"), problems) : {};
  const instProperties = defined("inst_properties") && val("inst_properties").trim() !== "" ? parseProperties("inst_properties", val("inst_properties"), problems) : {};
  const personality = defined("img_personality") && val("img_personality").trim() !== "" ? parsePersonality(val("img_personality"), problems) : [];

  const authKeys = val("auth_keys");
  authKeys
    .split("\n")
    .map((l) => l.trim())
    .forEach((l, i) => {
      if (l !== "" && !l.startsWith("#") && !SSH_KEY_LINE.test(l)) problems.push(`auth_keys: line ${i + 1} is not an OpenSSH public key`);
    });

  if (configUrl) checkUrl("config_url", configUrl, ["http", "https"], problems);
  if (defined("cloud_userdata") && !isBase64(val("cloud_userdata"))) problems.push("cloud_userdata: not base64");
  if (defined("os_product_key") && val("os_product_key") !== "" && !PRODUCT_KEY.test(val("os_product_key")))
    problems.push("os_product_key: must be five groups of 5 letters or digits joined by '-'");
  if (defined("os_answer_file") && val("os_answer_file") !== "") checkUrl("os_answer_file", val("os_answer_file"), ["http", "https"], problems);

  return {
    problems,
    params: {
      imgId: val("img_id"),
      imgFormat: (fmt || "diskdump") as ImageFormat,
      password: defined("img_passwd") ? val("img_passwd") : undefined,
      passwordHash: defined("img_passwd_hash") ? val("img_passwd_hash") : undefined,
      imgProperties,
      instProperties,
      personality,
      authKeys: authKeys.trim() === "" ? undefined : authKeys,
      cloudUserdata: defined("cloud_userdata") && val("cloud_userdata") !== "" ? val("cloud_userdata").replace(/\s/g, "") : undefined,
      osProductKey: val("os_product_key") || undefined,
      osAnswerFile: val("os_answer_file") || undefined,
      configUrl,
    },
  };
}

/** Resolve and check the parameters for create: throws one SnfError listing every problem. */
export async function resolveParams(config: Config, osp: Record<string, string>, signal?: AbortSignal): Promise<{ params: DeployParams; notes: string[] }> {
  let raw = mergeParams(config, osp);
  const notes: string[] = [];
  const first = checkParams(raw, { forVerify: true });
  if (first.problems.length) throw new SnfError(`bad OS parameters: ${first.problems.join("; ")}`);
  if (raw.config_url) {
    const shown = redactUrl(raw.config_url);
    const bytes = await fetchDocument(raw.config_url, { what: "config_url", ...fetchLimits(config), maxBytes: config.CONFIG_URL_MAX_BYTES, signal });
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new SnfError(`config_url ${shown}: not valid JSON`);
    }
    const applied = applyConfigDocument(raw, doc, shown);
    raw = applied.params;
    if (applied.ignored.length) notes.push(`config_url: ignored keys ${applied.ignored.join(", ")}`);
  }
  const r = checkParams(raw);
  if (r.problems.length) throw new SnfError(`bad OS parameters: ${r.problems.join("; ")}`);
  return { params: r.params, notes };
}

/**
 * The node's configuration file: /etc/snf-image/snf-image.conf, falling back
 * to /etc/default/snf-image; SNF_IMAGE_CONFIG names another path. It is a list
 * of KEY="value" lines, parsed here and never executed by a shell.
 */
import { existsSync, readFileSync } from "node:fs";
import * as v from "valibot";
import { SnfError } from "./errors.ts";

export const CONFIG_PATHS = ["/etc/snf-image/snf-image.conf", "/etc/default/snf-image"];

/** Parse shell-style assignments without running a shell. */
export function parseConfigText(text: string, source: string): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split("\n");
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new SnfError(`${source}:${i + 1}: not a KEY="value" line: ${JSON.stringify(truncate(line))}`);
    const value = parseValue(m[2]!);
    if (value === null) throw new SnfError(`${source}:${i + 1}: bad quoting in the value of ${m[1]}`);
    out.set(m[1]!, value);
  });
  return out;
}

function truncate(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** "a b", 'a b', a\ b; a trailing # comment after whitespace; no expansion. */
function parseValue(s: string): string | null {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < s.length && '"\\$`'.includes(s[i + 1]!)) i++;
        else if (s[i] === "$" || s[i] === "`") return null; // no expansion: refuse rather than guess
        out += s[i];
        i++;
      }
      if (i >= s.length) return null;
      i++;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) return null;
      out += s.slice(i + 1, end);
      i = end + 1;
    } else if (c === "\\") {
      if (i + 1 >= s.length) return null;
      out += s[i + 1];
      i += 2;
    } else if (c === " " || c === "\t") {
      const rest = s.slice(i).trimStart();
      if (rest === "" || rest.startsWith("#")) return out;
      return null; // a second word: the shell would run it as a command
    } else if (c === "$" || c === "`" || c === ";" || c === "|" || c === "&" || c === "<" || c === ">" || c === "(" || c === ")") {
      return null;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const YesNo = v.pipe(
  v.string(),
  v.transform((s) => s.trim().toLowerCase()),
  v.picklist(["yes", "no", "true", "false", "on", "off", "1", "0", ""], "must be yes or no"),
  v.transform((s) => ["yes", "true", "on", "1"].includes(s)),
);

/** 120, 90s, 2m, 1h, 1d → seconds (coreutils timeout syntax, as the original). */
const Duration = v.pipe(
  v.string(),
  v.regex(/^\d+(\.\d+)?[smhd]?$/, "must be a number of seconds, optionally with s, m, h or d"),
  v.transform((s) => {
    const n = Number.parseFloat(s);
    const unit = s.at(-1)!;
    return n * ({ s: 1, m: 60, h: 3600, d: 86400 }[unit] ?? 1);
  }),
  v.minValue(1, "must be at least 1 second"),
);

const PositiveInt = (min: number, max: number) =>
  v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number), v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`));

const AbsPath = v.pipe(v.string(), v.startsWith("/", "must be an absolute path"));
const Words = v.pipe(
  v.string(),
  v.transform((s) => s.split(/\s+/).filter(Boolean)),
);

export const DEFAULT_NIC_CONFIGS = ["", "dhcp", "dhcpv6", "slaac", "slaac_dhcp", "dhcp+dhcpv6", "dhcp+slaac", "dhcp+slaac_dhcp"] as const;

export const ConfigSchema = v.object({
  IMAGE_DIR: v.optional(AbsPath, "/var/lib/snf-image"),
  HELPER_DIR: v.optional(AbsPath, "/var/lib/snf-image/helper"),
  HELPER_SOFT_TIMEOUT: v.optional(Duration, "120"),
  HELPER_HARD_TIMEOUT: v.optional(Duration, "5"),
  HELPER_USER: v.optional(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_-]*\$?$/i, "must be a user name")), "nobody"),
  HELPER_MEMORY: v.optional(PositiveInt(128, 65536), "256"),
  HELPER_DEBUG: v.optional(YesNo, "no"),
  HELPER_ACCEL: v.optional(v.picklist(["auto", "kvm", "tcg"], "must be auto, kvm or tcg"), "auto"),
  HELPER_RESUME: v.optional(v.picklist(["auto", "off"], "must be auto or off"), "auto"),
  PROGRESS_MONITOR: v.optional(v.string(), ""),
  IMAGE_DEBUG: v.optional(YesNo, "no"),
  CLOUD_INIT_DEBUG: v.optional(YesNo, "no"),
  DHCP_TAGS: v.optional(Words, "auto dhcp nfdhcpd"),
  STATEFUL_DHCPV6_TAGS: v.optional(Words, "dhcpv6 stateful_dhcpv6"),
  STATELESS_DHCPV6_TAGS: v.optional(Words, "nfdhcpd stateless_dhcpv6"),
  DEFAULT_NIC_CONFIG: v.optional(v.picklist(DEFAULT_NIC_CONFIGS, `must be one of: ${DEFAULT_NIC_CONFIGS.filter(Boolean).join(", ")} or empty`), "dhcp"),
  QEMU: v.optional(v.string(), "qemu-system-x86_64"),
  HTTP_MAX_REDIRECTS: v.optional(PositiveInt(0, 20), "5"),
  HTTP_TIMEOUT: v.optional(Duration, "60"),
  /**
   * What a previous user of the disk left past the image's end (it becomes
   * the grown partition's free space): "cheap" zeroes it where that costs no
   * data writes (hole punched in a file disk; write-zeroes on a block device
   * that offloads them), "always" also where the kernel must write
   * zeroes (slow: the whole rest of the disk), "no" leaves it as it is
   * (Ganeti's prealloc_wipe_disks may have wiped it; see snf-image doctor).
   */
  ZERO_DISK_TAIL: v.optional(v.picklist(["no", "cheap", "always"], "must be no, cheap or always"), "cheap"),
  WINDOWS_TIMEZONE: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9 .+()-]{1,64}$/, "must be a Windows time zone name such as GMT Standard Time")), "GMT Standard Time"),
  CONFIG_URL_MAX_BYTES: v.optional(PositiveInt(1024, 64 * 1024 * 1024), String(1024 * 1024)),
  IMAGE_VERIFY: v.optional(v.picklist(["off", "if-present", "required"], "must be off, if-present or required"), "off"),
  IMAGE_KEYRING: v.optional(v.union([v.literal(""), AbsPath], "must be an absolute path"), ""),
});
export type Config = v.InferOutput<typeof ConfigSchema> & {
  /** The file that was read, or null when defaults are used. */
  source: string | null;
  /** OS parameters preset by the config file (IMG_ID=…, lower-cased). */
  presets: Record<string, string>;
  warnings: string[];
};

/** The 12 OS parameters; the config file may preset any of them in upper case. */
export const OS_PARAMETERS = [
  "img_id",
  "img_format",
  "img_passwd",
  "img_passwd_hash",
  "img_properties",
  "img_personality",
  "inst_properties",
  "auth_keys",
  "config_url",
  "cloud_userdata",
  "os_product_key",
  "os_answer_file",
] as const;

const OBSOLETE = new Set(["VERSION_CHECK", "HELPER_PKG", "KVM", "LOSETUP", "TIMEOUT", "CURL", "TAR", "DATE", "MD5SUM", "BLOCKDEV", "DD", "PARTED", "XEN_SCRIPTS_DIR", "XEN_CMD", "MULTISTRAP_CONFIG", "MULTISTRAP_APTPREFDIR", "VARIANTS_DIR", "UNATTEND"]);

export function configPath(env: Record<string, string | undefined> = process.env): string | null {
  if (env.SNF_IMAGE_CONFIG) return env.SNF_IMAGE_CONFIG;
  return CONFIG_PATHS.find((p) => existsSync(p)) ?? null;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const path = configPath(env);
  let text = "";
  if (path) {
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new SnfError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, source: string | null): Config {
  const entries = parseConfigText(text, source ?? "config");
  const known = new Set(Object.keys(ConfigSchema.entries));
  const input: Record<string, string> = {};
  const presets: Record<string, string> = {};
  const warnings: string[] = [];
  for (const [k, val] of entries) {
    if (known.has(k)) input[k] = val;
    else if ((OS_PARAMETERS as readonly string[]).includes(k.toLowerCase())) presets[k.toLowerCase()] = val;
    else if (OBSOLETE.has(k)) warnings.push(`${source}: ${k} is not used by this snf-image; ignored`);
    else warnings.push(`${source}: unknown setting ${k}; ignored`);
  }
  const r = v.safeParse(ConfigSchema, input);
  if (!r.success) {
    const issue = r.issues[0];
    const key = issue.path?.[0]?.key as string | undefined;
    const lineNo = key ? text.split("\n").findIndex((l) => new RegExp(`^\\s*(export\\s+)?${key}=`).test(l)) + 1 : 0;
    const where = lineNo > 0 ? `${source}:${lineNo}` : (source ?? "config");
    throw new SnfError(`${where}: ${key ?? "value"} ${issue.message} (got ${JSON.stringify(key ? input[key] : "")})`);
  }
  return { ...r.output, source, presets, warnings };
}

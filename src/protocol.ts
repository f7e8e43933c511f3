/**
 * The host/helper protocol: everything that crosses the boundary between the
 * host (src/) and the helper VM (helper/). Both sides import this module and
 * nothing else is shared between them.
 *
 *  start-up      The helper boots (or is resumed from a saved state) with no
 *                 instance disk, writes HELPER_READY_LINE on the console and
 *                 waits. The host then hot-adds the instance disks as SCSI
 *                 disks (virtio-scsi, serial diskSerial(i), SCSI id i); the
 *                 first one to appear wakes the helper, which says
 *                 HELPER_AWAKE_LINE before anything else. The read-only tools
 *                 disk is a virtio disk with serial TOOLS_DISK_SERIAL.
 *  host → helper  HelperParams, as JSON in an inherited memfd handed to qemu
 *                 with `-fw_cfg name=<FWCFG_PARAMS>,file=…`; once woken the
 *                 guest binds qemu_fw_cfg again (a resumed guest must see the
 *                 document of its own run) and reads
 *                 /sys/firmware/qemu_fw_cfg/by_name/<FWCFG_PARAMS>/raw.
 *  helper → host  ttyS0: console (free text, copied into the Ganeti OS log).
 *                 ttyS1: result. First line exactly RESULT_SUCCESS, or
 *                        "ERROR: <one line>".
 *                 ttyS2: monitor. One MonitorEvent a line (encodeMonitor), at
 *                        most MONITOR_MAX_LINES lines of MONITOR_MAX_LINE_BYTES.
 *
 * Bump PROTOCOL_VERSION whenever anything here changes shape; the helper
 * image records the version it speaks (HelperManifest) and the host refuses a
 * mismatch.
 */
import * as v from "valibot";

export const PROTOCOL_VERSION = 5;

/**
 * img_format values: the one list (params, the format code, doctor and the
 * helper's params schema all use it). diskdump, extdump and ntfsdump are raw
 * layouts; qcow2 is a diskdump in a qcow2 container, converted on the host.
 */
export const IMAGE_FORMATS = ["diskdump", "extdump", "ntfsdump", "qcow2"] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** fw_cfg item that carries the parameters (opt/ prefix is required by qemu). */
export const FWCFG_PARAMS = "opt/snf-image/params";
/** Upper bound on an os_answer_file document (fetched by the host). */
export const ANSWER_FILE_MAX_BYTES = 1024 * 1024;
/** Upper bound on the parameter document (personality files included). */
export const PARAMS_MAX_BYTES = 8 * 1024 * 1024;

export const TOOLS_DISK_SERIAL = "snf-tools";
/** The console line with which the helper says it waits for its disks (exactly this, on ttyS0). */
export const HELPER_READY_LINE = "snf-image-helper: ready, waiting for the instance disks";
/** The console line with which it says a disk woke it (before it reads or touches anything). */
export const HELPER_AWAKE_LINE = "snf-image-helper: woken by the instance disks";
/** On the tools disk when its ufs.ko can write UFS (content: the linux-source version it came from). */
export const UFS_WRITE_MARKER = "/usr/lib/snf-image-helper/ufs-write";
export const diskSerial = (index: number): string => `snf-disk${index}`;

export const RESULT_SUCCESS = "SUCCESS";
export const MONITOR_MAX_LINES = 100;
export const MONITOR_MAX_LINE_BYTES = 512;

// ---------------------------------------------------------------------------
// host → helper

// Value rules, defined once: the schema below runs them on both sides
// (encodeParams on the host, decodeParams in the guest), so the helper only decodes.

/** base64, line breaks and trailing whitespace allowed. */
export function isBase64(s: string): boolean {
  return /^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(s) && s.replace(/\s/g, "").length % 4 === 0;
}
/** A crypt(3) hash: $id$… (md5, sha256/512, bcrypt, yescrypt, gost-yescrypt, scrypt, sha1crypt) or DES. */
export const CRYPT_HASH = /^(\$(1|5|6|2[abxy]?|y|gy|7|sha1|md5)\$[./A-Za-z0-9$=,]+|[./A-Za-z0-9]{13})$/;
/** A Windows product key: 5 groups of 5 letters/digits. */
export const PRODUCT_KEY = /^[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){4}$/;

export const Base64 = v.pipe(v.string(), v.check(isBase64, "not base64"));
export const CryptHash = v.pipe(v.string(), v.regex(CRYPT_HASH, "not a crypt(3) hash"));
/** Upper-cased on the way through. */
export const ProductKey = v.pipe(v.string(), v.regex(PRODUCT_KEY, "os_product_key is not of the form XXXXX-XXXXX-XXXXX-XXXXX-XXXXX"), v.toUpperCase());

export const PersonalityFileSchema = v.object({
  /** Absolute path inside the image. */
  path: v.pipe(v.string(), v.startsWith("/"), v.maxLength(4096)),
  /** base64 file contents. */
  contents: Base64,
  owner: v.optional(v.string(), "root"),
  group: v.optional(v.string(), "root"),
  /** Numeric mode (decimal int as in the original, e.g. 288 = 0440). */
  mode: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0o7777)), 0o440),
});
export type PersonalityFile = v.InferOutput<typeof PersonalityFileSchema>;

export const NicSchema = v.object({
  index: v.pipe(v.number(), v.integer(), v.minValue(0)),
  mac: v.pipe(v.string(), v.regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i)),
  ip: v.optional(v.string()),
  mode: v.optional(v.string()),
  link: v.optional(v.string()),
  name: v.optional(v.string()),
  frontendType: v.optional(v.string()),
  network: v.optional(
    v.object({
      name: v.optional(v.string()),
      subnet: v.optional(v.string()),
      gateway: v.optional(v.string()),
      subnet6: v.optional(v.string()),
      gateway6: v.optional(v.string()),
      tags: v.optional(v.array(v.string()), []),
    }),
  ),
});
export type Nic = v.InferOutput<typeof NicSchema>;

export const HelperDiskSchema = v.object({
  index: v.pipe(v.number(), v.integer(), v.minValue(0)),
  serial: v.string(),
  sizeBytes: v.optional(v.number()),
});

export const HelperParamsSchema = v.object({
  protocol: v.literal(PROTOCOL_VERSION),
  /** create: full task run; rename: AssignHostname only. */
  mode: v.picklist(["create", "rename"]),
  hostname: v.pipe(v.string(), v.minLength(1), v.maxLength(255)),
  imgFormat: v.picklist(IMAGE_FORMATS),
  password: v.optional(v.string()),
  passwordHash: v.optional(CryptHash),
  /** Upper-cased keys; host-set < img_properties < inst_properties already applied. */
  properties: v.record(v.string(), v.string()),
  personality: v.optional(v.array(PersonalityFileSchema), []),
  authKeys: v.optional(v.string()),
  /** base64 user-data for cloud-init NoCloud. */
  cloudUserdata: v.optional(Base64),
  osProductKey: v.optional(ProductKey),
  /** os_answer_file as fetched by the host, base64 (unattend.xml, or sysprep.inf for windows-legacy). */
  answerFile: v.optional(v.pipe(v.string(), v.maxLength(Math.ceil(ANSWER_FILE_MAX_BYTES / 3) * 4), v.regex(/^[A-Za-z0-9+/]*={0,2}$/))),
  /** WINDOWS_TIMEZONE: the time zone of generated Windows answer files. */
  windowsTimezone: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9 .+()-]{1,64}$/)), "GMT Standard Time"),
  nics: v.optional(v.array(NicSchema), []),
  dhcpTags: v.optional(v.array(v.string()), []),
  statefulDhcpv6Tags: v.optional(v.array(v.string()), []),
  statelessDhcpv6Tags: v.optional(v.array(v.string()), []),
  defaultNicConfig: v.optional(v.string(), "dhcp"),
  disks: v.pipe(v.array(HelperDiskSchema), v.minLength(1)),
  /**
   * Fresh SSH host keys made on the host (natively, while the image is
   * copied) so the helper need not run RSA key generation under emulation.
   * The helper installs the types the image's sshd wants and makes any other
   * type itself.
   */
  hostKeys: v.optional(
    v.array(v.object({ type: v.picklist(["ed25519", "ecdsa", "rsa"]), privateKey: v.string(), publicKey: v.string() })),
    [],
  ),
  debug: v.optional(v.boolean(), false),
  cloudInitDebug: v.optional(v.boolean(), false),
  /** Seconds since the epoch on the host, for timestamps the guest writes (and its clock after a resume). */
  now: v.optional(v.number()),
  /** Fresh random bytes from the host (base64, 32–64 bytes): the guest reseeds its kernel generator with them. */
  seed: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/]{43,88}={0,2}$/))),
});
export type HelperParams = v.InferOutput<typeof HelperParamsSchema>;

/** A fresh `seed` for HelperParams (host side: 32 bytes from the host's generator). */
export const newSeed = (): string => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
export type HelperParamsInput = v.InferInput<typeof HelperParamsSchema>;

export function encodeParams(p: HelperParamsInput): string {
  const parsed = v.parse(HelperParamsSchema, p);
  return JSON.stringify(parsed);
}

export function decodeParams(text: string): HelperParams {
  if (text.length > PARAMS_MAX_BYTES) throw new Error("parameter document too large");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error("parameter document is not JSON");
  }
  const r = v.safeParse(HelperParamsSchema, json);
  if (!r.success) throw new Error(`bad parameter document: ${summarizeIssues(r.issues)}`);
  return r.output;
}

// ---------------------------------------------------------------------------
// helper → host: monitor channel

export type MonitorEvent =
  | { kind: "TASK_START"; task: string }
  | { kind: "TASK_END"; task: string; ms: number }
  | { kind: "TASK_SKIP"; task: string; reason: string }
  | { kind: "INFO" | "WARNING" | "ERROR"; text: string };

const TASK_NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;

/** One line, no newline, truncated to MONITOR_MAX_LINE_BYTES. */
export function encodeMonitor(e: MonitorEvent): string {
  let line: string;
  switch (e.kind) {
    case "TASK_START":
      line = `TASK_START:${e.task}`;
      break;
    case "TASK_END":
      line = `TASK_END:${e.task}:${Math.max(0, Math.round(e.ms))}`;
      break;
    case "TASK_SKIP":
      line = `TASK_SKIP:${e.task}:${oneLine(e.reason)}`;
      break;
    default:
      line = `${e.kind}:${oneLine(e.text)}`;
  }
  return truncateBytes(line, MONITOR_MAX_LINE_BYTES);
}

/** Parse one monitor line; throws on anything outside the fixed vocabulary. */
export function decodeMonitor(raw: string): MonitorEvent {
  const line = raw.replace(/\r$/, "");
  if (Buffer.byteLength(line) > MONITOR_MAX_LINE_BYTES) throw new Error("monitor line too long");
  const colon = line.indexOf(":");
  if (colon < 0) throw new Error("monitor line without a kind");
  const kind = line.slice(0, colon);
  const rest = line.slice(colon + 1);
  switch (kind) {
    case "TASK_START":
      if (!TASK_NAME.test(rest)) throw new Error("bad task name");
      return { kind, task: rest };
    case "TASK_END": {
      const m = /^([A-Za-z][A-Za-z0-9]{0,63}):(\d{1,9})$/.exec(rest);
      if (!m) throw new Error("bad TASK_END");
      return { kind, task: m[1]!, ms: Number(m[2]) };
    }
    case "TASK_SKIP": {
      const c = rest.indexOf(":");
      const task = c < 0 ? rest : rest.slice(0, c);
      if (!TASK_NAME.test(task)) throw new Error("bad task name");
      return { kind, task, reason: c < 0 ? "" : oneLine(rest.slice(c + 1)) };
    }
    case "INFO":
    case "WARNING":
    case "ERROR":
      return { kind, text: oneLine(rest) };
    default:
      throw new Error(`unknown monitor kind ${JSON.stringify(kind.slice(0, 20))}`);
  }
}

// ---------------------------------------------------------------------------
// helper → host: result channel

export type HelperResult = { ok: true } | { ok: false; error: string };

export function encodeResult(r: HelperResult): string {
  return r.ok ? `${RESULT_SUCCESS}\n` : `ERROR: ${truncateBytes(oneLine(r.error), 400)}\n`;
}

/** Judge the result channel: success only if the first line is exactly SUCCESS. */
export function decodeResult(text: string): HelperResult | null {
  const first = text.split("\n", 1)[0]?.replace(/\r$/, "") ?? "";
  if (first === RESULT_SUCCESS) return { ok: true };
  if (first.trim() === "") return null;
  const msg = first.startsWith("ERROR:") ? first.slice(6).trim() : first.trim();
  return { ok: false, error: truncateBytes(oneLine(msg), 400) };
}

// ---------------------------------------------------------------------------
// The helper image manifest (HELPER_DIR/manifest.json)

export const HelperManifestSchema = v.object({
  protocol: v.number(),
  version: v.string(),
  kernel: v.string(),
  built: v.string(),
  files: v.object({ kernel: v.string(), initrd: v.string(), tools: v.string() }),
  /** linux-source version the UFS-write module came from; absent: *BSD images cannot be mounted */
  ufsWrite: v.optional(v.string()),
});
export type HelperManifest = v.InferOutput<typeof HelperManifestSchema>;

// ---------------------------------------------------------------------------
// small shared text helpers (pure)

// eslint-disable-next-line no-control-regex
const LINE_BREAKS = /[\r\n\x0b\x0c\x85\u2028\u2029]/;
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * THE sanitizer for text that crosses from the image or the guest into a log
 * line (both sides use it): line breaks of every kind (CR, LF, VT, FF, NEL,
 * U+2028/2029) become " | ", tabs a space, and every other C0 control, DEL,
 * C1 control (U+0080–U+009F, e.g. a one-byte CSI) and bidi control
 * (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069) is dropped. The result is
 * one line that cannot forge another line nor reorder or recolour one.
 */
export function oneLine(s: string): string {
  return s
    .split(LINE_BREAKS)
    .map((l) => l.replace(/\t/g, " ").replace(UNSAFE_CHARS, "").trim())
    .filter((l) => l !== "")
    .join(" | ");
}

export function truncateBytes(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  // at most `max` chars can fit in `max` bytes; then drop one char at a time (always terminates)
  let out = s.slice(0, Math.max(0, max));
  while (out.length > 0 && Buffer.byteLength(out) > max - 3) out = out.slice(0, -1);
  return `${out}...`;
}

export function summarizeIssues(issues: ReadonlyArray<{ message: string; path?: ReadonlyArray<{ key: unknown }> }>): string {
  return issues
    .map((i) => {
      const p = i.path?.map((x) => String(x.key)).join(".");
      return p ? `${p}: ${i.message}` : i.message;
    })
    .join("; ");
}

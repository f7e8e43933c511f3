/**
 * `snf-image deploy IMAGE DISK`: the pipeline of `create` without Ganeti, for
 * operators trying images and for other hypervisors. The command line is
 * validated here and turned into the same DeployInput (OS parameters, disk,
 * NICs, hostname) that `create` builds from Ganeti's environment; then the
 * same deploy() runs, with the same one-line errors and cleanups. Secrets
 * never come from argv: the password from --password-file or a no-echo prompt.
 */
import { defineCommand } from "citty";
import { readFileSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import * as v from "valibot";
import { loadConfig } from "../config.ts";
import type { DeployInput } from "../customize.ts";
import { deploy } from "../deploy.ts";
import { SnfError, causeOf, errorMessage } from "../errors.ts";
import type { GanetiNic } from "../ganeti/env.ts";
import { log, setDebug } from "../log.ts";
import { IMAGE_FORMATS } from "../protocol.ts";
import { openTerminalMonitor, type ProgressMode, type TerminalMonitor } from "../progress.ts";
import { runScript } from "./run.ts";

const MAX_SECRET_FILE = 4096;
const MAX_AUTH_KEYS = 256 * 1024;
const MAX_PERSONALITY_FILE = 4 * 1024 * 1024;

const Hostname = v.pipe(
  v.string(),
  v.maxLength(253, "--hostname is longer than 253 characters"),
  v.regex(/^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/, "--hostname must be a host name (letters, digits, '-', dots)"),
);
const Property = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*=/, "--property must be KEY=VALUE with KEY a name like ROOT_PARTITION"));
const Personality = v.pipe(
  v.string(),
  v.regex(/^[^:]+:\/[^:]*(:[0-7]{3,4})?$/, "--personality must be LOCAL_FILE:/guest/path[:MODE] (MODE octal, e.g. 0600)"),
);
const Ipv4 = v.pipe(v.string(), v.ipv4("not an IPv4 address"));
const NicSchema = v.strictObject(
  {
    mac: v.pipe(v.string("mac= is required"), v.regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i, "mac= must be a MAC address")),
    ip: v.optional(Ipv4),
    subnet: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, "subnet= must be an IPv4 CIDR"))),
    gateway: v.optional(Ipv4),
    subnet6: v.optional(v.pipe(v.string(), v.regex(/^[0-9a-f:]+\/\d{1,3}$/i, "subnet6= must be an IPv6 CIDR"))),
    gateway6: v.optional(v.pipe(v.string(), v.ip("gateway6= must be an IPv6 address"))),
    tags: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_+-]*$/, "tags= must be words joined by +"))),
    name: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "name= must be a short name"))),
  },
  "unknown key (known: mac, ip, subnet, gateway, subnet6, gateway6, tags, name)",
);

/** Every value of a repeatable option (`--x V` or `--x=V`); citty keeps only the last. */
export function repeated(rawArgs: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === "--") break;
    if (a === `--${name}`) {
      const next = rawArgs[i + 1];
      if (next === undefined) throw new SnfError(`--${name} needs a value`);
      out.push(next);
      i++;
    } else if (a.startsWith(`--${name}=`)) out.push(a.slice(name.length + 3));
  }
  return out;
}

function check<T extends v.GenericSchema>(schema: T, value: unknown, what: string): v.InferOutput<T> {
  const r = v.safeParse(schema, value);
  if (!r.success) throw new SnfError(`${what}: ${r.issues[0].message}`);
  return r.output;
}

function readBounded(path: string, max: number, what: string): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new SnfError(`${what} ${path} is not a regular file`);
    size = st.size;
  } catch (e) {
    if (e instanceof SnfError) throw e;
    throw new SnfError(`${what} ${path}: ${causeOf(e)}`);
  }
  if (size > max) throw new SnfError(`${what} ${path} is larger than ${max} bytes`);
  return readFileSync(path);
}

export function parseNic(spec: string, index: number): GanetiNic {
  const obj: Record<string, string> = {};
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new SnfError(`--nic ${index}: "${part.slice(0, 40)}" is not key=value`);
    obj[part.slice(0, eq)] = part.slice(eq + 1);
  }
  const n = check(NicSchema, obj, `--nic ${index}`);
  const hasNet = n.subnet || n.gateway || n.subnet6 || n.gateway6 || n.tags !== undefined;
  return {
    index,
    mac: n.mac.toLowerCase(),
    ip: n.ip,
    mode: "routed",
    name: n.name,
    network: hasNet
      ? { subnet: n.subnet, gateway: n.gateway, subnet6: n.subnet6, gateway6: n.gateway6, tags: (n.tags ?? "").split("+").filter(Boolean) }
      : undefined,
  };
}

/**
 * A password typed on the terminal without echo (asked twice). The terminal
 * is in raw mode (no echo) before the first prompt is shown and until the
 * second answer is in, so nothing typed early is echoed.
 */
async function promptPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new SnfError("--ask-password needs a terminal on stdin (use --password-file FILE otherwise)");
  let pending = "";
  let waiter: (() => void) | null = null;
  const onData = (d: Buffer) => {
    pending += d.toString("utf8");
    waiter?.();
  };
  const readLine = async (prompt: string): Promise<string> => {
    process.stderr.write(prompt);
    let buf = "";
    for (;;) {
      while (pending === "") await new Promise<void>((r) => (waiter = r));
      const chars = [...pending];
      pending = "";
      for (const [i, ch] of chars.entries()) {
        if (ch === "\r" || ch === "\n") {
          pending = chars.slice(i + 1).join("").replace(/^\n/, "");
          process.stderr.write("\n");
          return buf;
        }
        if (ch === "\x03" || ch === "\x04") throw new SnfError("password prompt cancelled");
        if (ch === "\x7f" || ch === "\b") buf = buf.slice(0, -1);
        else if (ch >= " ") buf += ch;
        if (buf.length > MAX_SECRET_FILE) throw new SnfError("password is too long");
      }
    }
  };
  stdin.setRawMode(true);
  stdin.on("data", onData);
  stdin.resume();
  try {
    const a = await readLine("Password for the image's users: ");
    if (a === "") throw new SnfError("empty password");
    const b = await readLine("Repeat the password: ");
    if (a !== b) throw new SnfError("the two passwords differ");
    return a;
  } finally {
    stdin.off("data", onData);
    stdin.setRawMode(false);
    stdin.pause();
  }
}

export interface DeployArgs {
  image: string;
  disk: string;
  format: string;
  hostname?: string;
  passwordFile?: string;
  askPassword: boolean;
  authKeys?: string;
  properties: string[];
  personality: string[];
  nics: string[];
}

/**
 * IMAGE given as a path (it contains a '/' and names a file, e.g. ./img.raw):
 * the file's directory serves as IMAGE_DIR for this run (same confinement,
 * and the SHA256SUMS next to it is the one IMAGE_VERIFY reads).
 */
export function imagePath(image: string): { imageDir: string; name: string } | null {
  if (!image.includes("/") || /^[a-z][a-z0-9+.-]*:/i.test(image)) return null;
  let real: string;
  try {
    real = realpathSync(image);
    if (!statSync(real).isFile()) return null;
  } catch {
    return null;
  }
  return { imageDir: dirname(real), name: basename(real) };
}

/** Command line → the DeployInput `create` builds from Ganeti's environment. Throws one line. */
export async function buildInput(a: DeployArgs): Promise<DeployInput & { imageDir?: string }> {
  if (!a.image) throw new SnfError("IMAGE is missing: a name in IMAGE_DIR, a path to a file, or an http(s):// URL");
  const path = imagePath(a.image);
  if (!a.disk) throw new SnfError("DISK is missing: a file or a block device to write to");
  const format = a.format.toLowerCase();
  if (!(IMAGE_FORMATS as readonly string[]).includes(format)) throw new SnfError(`--format ${JSON.stringify(a.format)} is not one of ${IMAGE_FORMATS.join(", ")}`);
  const disk = resolve(a.disk);
  const fallbackName = basename(disk).replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9-]/g, "-").replace(/^-+|-+$/g, "").slice(0, 63) || "snf-image";
  const hostname = check(Hostname, a.hostname ?? fallbackName, "--hostname");

  const osp: Record<string, string> = { img_id: path ? path.name : a.image, img_format: format };
  if (a.passwordFile && a.askPassword) throw new SnfError("give only one of --password-file and --ask-password");
  if (a.passwordFile) {
    const pw = readBounded(a.passwordFile, MAX_SECRET_FILE, "--password-file").toString("utf8").replace(/\r?\n$/, "");
    if (pw === "") throw new SnfError(`--password-file ${a.passwordFile} is empty`);
    if (/[\0\n]/.test(pw)) throw new SnfError(`--password-file ${a.passwordFile}: the password must be one line`);
    osp.img_passwd = pw;
  } else if (a.askPassword) osp.img_passwd = await promptPassword();
  if (a.authKeys) osp.auth_keys = readBounded(a.authKeys, MAX_AUTH_KEYS, "--auth-keys").toString("utf8");

  if (a.properties.length) {
    const props: Record<string, string> = {};
    for (const p of a.properties) {
      check(Property, p, "--property");
      const eq = p.indexOf("=");
      props[p.slice(0, eq).toUpperCase()] = p.slice(eq + 1);
    }
    osp.img_properties = JSON.stringify(props);
  }
  if (a.personality.length) {
    osp.img_personality = JSON.stringify(
      a.personality.map((spec) => {
        check(Personality, spec, "--personality");
        const [local, guest, mode] = spec.split(":") as [string, string, string | undefined];
        const contents = readBounded(local, MAX_PERSONALITY_FILE, "--personality file").toString("base64");
        return { path: guest, contents, owner: "root", group: "root", mode: mode ? Number.parseInt(mode, 8) : 0o440 };
      }),
    );
  }
  return {
    osp,
    disks: [{ index: 0, path: disk, access: "rw" }],
    disk0: disk,
    nics: a.nics.map((n, i) => parseNic(n, i)),
    instance: { name: hostname },
    imageDir: path?.imageDir,
  };
}

async function run(args: DeployArgs & { json: boolean; verbose: boolean }, signal: AbortSignal): Promise<void> {
  const mode: ProgressMode = args.json ? "json" : process.stderr.isTTY ? "tty" : "plain";
  const sink = mode === "json" ? { write: (s: string) => void process.stdout.write(s) } : { write: (s: string) => void process.stderr.write(s), columns: process.stderr.columns };
  const monitor: TerminalMonitor = openTerminalMonitor(mode, sink);
  try {
    let config = loadConfig();
    setDebug(config.IMAGE_DEBUG);
    if (mode !== "plain" && !args.verbose && !config.IMAGE_DEBUG) log.level = 1; // warnings and errors only: the bar says the rest
    if (mode === "tty") {
      log.setReporters([{ log: (o) => monitor.above(`${o.type === "info" ? "" : `${o.type}: `}${o.args.map(String).join(" ")}`) }]);
    }
    for (const w of config.warnings) log.warn(w);
    const input = await buildInput(args);
    if (input.imageDir) config = { ...config, IMAGE_DIR: input.imageDir };
    const t0 = performance.now();
    const r = await deploy(input, config, monitor, signal);
    const secs = (ms: number) => (ms / 1000).toFixed(1);
    monitor.end({
      ok: true,
      text: `deployed ${args.image} onto ${input.disks[0]!.path} in ${secs(performance.now() - t0)} s (copy ${secs(r.copyMs)} s, helper ${secs(r.helperMs)} s under ${r.accel}, ${r.tasks.length} tasks)`,
      summary: { image: args.image, disk: input.disks[0]!.path, hostname: input.instance!.name, ms: Math.round(performance.now() - t0), copyMs: r.copyMs, bytes: r.bytes, helperMs: r.helperMs, accel: r.accel, tasks: r.tasks },
    });
  } catch (e) {
    monitor.end({ ok: false, error: errorMessage(e) });
    throw e;
  } finally {
    await monitor.close();
  }
}

export const deployCommand = defineCommand({
  meta: {
    name: "deploy",
    description: "Write IMAGE onto DISK and customize it, as `create` does, without Ganeti",
  },
  args: {
    image: { type: "positional", required: false, description: "NAME in IMAGE_DIR (or local://NAME), a path to a file (with a '/', e.g. ./img.raw), an http(s):// URL, or null", valueHint: "IMAGE" },
    disk: { type: "positional", required: false, description: "a file or block device to write to (its size is the disk size)", valueHint: "DISK" },
    format: { type: "string", default: "diskdump", description: `image format: ${IMAGE_FORMATS.join(", ")}` },
    hostname: { type: "string", description: "host name of the guest (default: from DISK's file name)" },
    "password-file": { type: "string", description: "file whose first line is the password for the image's users" },
    "ask-password": { type: "boolean", default: false, description: "ask for the password on the terminal (no echo)" },
    "auth-keys": { type: "string", description: "file of OpenSSH authorized_keys lines to install" },
    property: { type: "string", description: "image property KEY=VALUE (repeatable), e.g. ROOT_PARTITION=1" },
    personality: { type: "string", description: "LOCAL_FILE:/guest/path[:MODE] to inject (repeatable; MODE octal, default 0440)" },
    nic: { type: "string", description: "mac=M[,ip=A,subnet=CIDR,gateway=A,subnet6=CIDR,gateway6=A,tags=t1+t2] (repeatable)" },
    json: { type: "boolean", default: false, description: "JSON lines on stdout for machines" },
    verbose: { type: "boolean", default: false, description: "show the info log lines too" },
  },
  run: ({ args, rawArgs }) =>
    runScript("deploy", (signal) =>
      run(
        {
          image: String(args.image ?? ""),
          disk: String(args.disk ?? ""),
          format: String(args.format),
          hostname: args.hostname as string | undefined,
          passwordFile: args["password-file"] as string | undefined,
          askPassword: Boolean(args["ask-password"]),
          authKeys: args["auth-keys"] as string | undefined,
          properties: repeated(rawArgs, "property"),
          personality: repeated(rawArgs, "personality"),
          nics: repeated(rawArgs, "nic"),
          json: Boolean(args.json),
          verbose: Boolean(args.verbose),
        },
        signal,
      ),
    ),
});

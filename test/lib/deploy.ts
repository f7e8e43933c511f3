/**
 * Run the built OS definition's scripts the way Ganeti does: a reset
 * environment (only Ganeti's variables and PATH), cwd = the OS directory,
 * stdin closed, stdout+stderr into one log.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const DIST = join(ROOT, "dist");
export const OS_DIR = join(DIST, "os", "snf-image");
export const HELPER_DIR = process.env.SNF_TEST_HELPER_DIR ?? join(DIST, "helper");

export interface NicSpec {
  mac: string;
  ip?: string;
  network?: { subnet?: string; gateway?: string; subnet6?: string; gateway6?: string; tags?: string[]; name?: string };
}

export interface CreateSpec {
  disks: string[];
  instance?: string;
  osp: Record<string, string>;
  /** Lines of the config file (IMAGE_DIR, HELPER_DIR=dist/helper are preset). */
  config?: Record<string, string>;
  imageDir?: string;
  nics?: NicSpec[];
  script?: "create" | "rename" | "verify" | "import" | "export";
  extraEnv?: Record<string, string>;
  stdin?: Uint8Array | Blob;
}

export interface ScriptRun {
  code: number;
  output: string;
  /** Last line of the output: where the one-line error must be. */
  lastLine: string;
  ms: number;
}

export function writeConfig(dir: string, entries: Record<string, string>): string {
  const file = join(dir, "snf-image.conf");
  writeFileSync(file, Object.entries(entries).map(([k, v]) => `${k}="${v}"\n`).join(""));
  return file;
}

export function ganetiEnv(spec: CreateSpec, configFile: string): Record<string, string> {
  const name = spec.instance ?? "vm1.example.org";
  const env: Record<string, string> = {
    PATH: "/sbin:/bin:/usr/sbin:/usr/bin",
    OS_API_VERSION: "20",
    OS_NAME: "snf-image",
    OS_VARIANT: "default",
    DEBUG_LEVEL: "0",
    INSTANCE_NAME: name,
    INSTANCE_OS: "snf-image+default",
    INSTANCE_UUID: "2c90817f-389f-4d87-a2c9-806ce8913754",
    HYPERVISOR: "kvm",
    INSTANCE_HV_disk_type: "paravirtual",
    INSTANCE_BE_maxmem: "512",
    DISK_COUNT: String(spec.disks.length),
    NIC_COUNT: String(spec.nics?.length ?? 0),
    SNF_IMAGE_CONFIG: configFile,
  };
  spec.disks.forEach((d, i) => {
    env[`DISK_${i}_PATH`] = d;
    env[`DISK_${i}_ACCESS`] = "rw";
    env[`DISK_${i}_BACKEND_TYPE`] = d.startsWith("/dev/") ? "block" : "file:loop";
    env[`DISK_${i}_FRONTEND_TYPE`] = "paravirtual";
  });
  spec.nics?.forEach((n, i) => {
    env[`NIC_${i}_MAC`] = n.mac;
    env[`NIC_${i}_MODE`] = "routed";
    env[`NIC_${i}_LINK`] = "100";
    if (n.ip) env[`NIC_${i}_IP`] = n.ip;
    if (n.network) {
      env[`NIC_${i}_NETWORK_NAME`] = n.network.name ?? `net${i}`;
      if (n.network.subnet) env[`NIC_${i}_NETWORK_SUBNET`] = n.network.subnet;
      if (n.network.gateway) env[`NIC_${i}_NETWORK_GATEWAY`] = n.network.gateway;
      if (n.network.subnet6) env[`NIC_${i}_NETWORK_SUBNET6`] = n.network.subnet6;
      if (n.network.gateway6) env[`NIC_${i}_NETWORK_GATEWAY6`] = n.network.gateway6;
      env[`NIC_${i}_NETWORK_TAGS`] = (n.network.tags ?? []).join(" ");
    }
  });
  for (const [k, v] of Object.entries(spec.osp)) env[`OSP_${k.toUpperCase()}`] = v;
  return { ...env, ...spec.extraEnv };
}

export interface RunningScript {
  proc: ReturnType<typeof Bun.spawn>;
  /** stdout + stderr so far. */
  output(): string;
  /** Resolves once the output so far matches `re` (rejects when the script ends first). */
  waitFor(re: RegExp): Promise<void>;
  done: Promise<ScriptRun>;
}

/** Start one OS script of dist/os/snf-image as Ganeti would; its output is collected as it comes. */
export function spawnOsScript(spec: CreateSpec): RunningScript {
  const dir = mkdtempSync(join(tmpdir(), "snf-test-"));
  const configFile = writeConfig(dir, {
    IMAGE_DIR: spec.imageDir ?? dir,
    HELPER_DIR,
    HELPER_SOFT_TIMEOUT: "300",
    ...spec.config,
  });
  const script = spec.script ?? "create";
  const t0 = performance.now();
  const proc = Bun.spawn([join(OS_DIR, script), ...(script === "verify" ? ["parameters"] : [])], {
    cwd: OS_DIR,
    env: ganetiEnv(spec, configFile),
    stdin: spec.stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  let err = "";
  const waiters: { re: RegExp; resolve: () => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.re.test(out + err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const dec = new TextDecoder();
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      add(dec.decode(chunk, { stream: true }));
      check();
    }
  };
  const done = (async (): Promise<ScriptRun> => {
    const [, , code] = await Promise.all([
      pump(proc.stdout as ReadableStream<Uint8Array>, (s) => (out += s)),
      pump(proc.stderr as ReadableStream<Uint8Array>, (s) => (err += s)),
      proc.exited,
    ]);
    rmSync(dir, { recursive: true, force: true }); // the run's config file (and IMAGE_DIR when none was given)
    for (const w of waiters.splice(0)) w.reject(new Error(`${script} ended (code ${code}) before ${w.re}:\n${(out + err).slice(-3000)}`));
    const output = script === "export" ? err : out + err;
    const lines = output.trimEnd().split("\n");
    return { code, output, lastLine: lines[lines.length - 1] ?? "", ms: performance.now() - t0 };
  })();
  return {
    proc,
    output: () => out + err,
    waitFor: (re) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(out + err)) return resolve();
        if (proc.exitCode !== null || proc.signalCode !== null) return reject(new Error(`${script} already ended before ${re}`));
        waiters.push({ re, resolve, reject });
      }),
    done,
  };
}

/** Run one OS script of dist/os/snf-image as Ganeti would. */
export function runOsScript(spec: CreateSpec): Promise<ScriptRun> {
  return spawnOsScript(spec).done;
}

export function runCreate(spec: CreateSpec): Promise<ScriptRun> {
  return runOsScript({ ...spec, script: "create" });
}

/** Put a cached image into an IMAGE_DIR: a hard link where possible, else a sparse copy. */
export function placeImage(src: string, dest: string): void {
  const ln = Bun.spawnSync(["ln", "-f", src, dest], { stderr: "pipe" });
  if (ln.exitCode === 0) return;
  const cp = Bun.spawnSync(["cp", "--sparse=always", src, dest], { stderr: "pipe" });
  if (cp.exitCode !== 0) throw new Error(`cannot copy ${src} to ${dest}: ${cp.stderr.toString().trim()}`);
}

/**
 * What a finished create left behind: qemu processes and loop devices that
 * mention `work` (other developers' runs use other paths), processes still
 * running as children of the test (a decompressor, qemu), entries in the
 * run's TMPDIR, and files under it that hold `secret`.
 */
export function leftovers(work: string, runTmp: string, secret?: string | string[]): { qemu: string[]; loops: string[]; children: string[]; temp: string[]; secretIn: string[] } {
  const qemu = Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" }).stdout.toString().trim().split("\n").filter(Boolean);
  const loops = Bun.spawnSync(["losetup", "-a"], { stdout: "pipe" }).stdout.toString().split("\n").filter((l) => l.includes(work));
  const children = Bun.spawnSync(["pgrep", "-P", String(process.pid)], { stdout: "pipe" }).stdout.toString().trim().split("\n").filter(Boolean);
  const temp = readdirSync(runTmp);
  const secrets = secret === undefined ? [] : [secret].flat();
  const secretIn = secrets.length ? Bun.spawnSync(["grep", "-rlF", ...secrets.flatMap((x) => ["-e", x]), "--", runTmp], { stdout: "pipe" }).stdout.toString().trim().split("\n").filter(Boolean) : [];
  return { qemu, loops, children, temp, secretIn };
}

/** The qemu process proper (argv[0] is qemu, not its setpriv/unshare/timeout leash) whose command line mentions `marker`. */
export function qemuProper(marker: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (/^[^\0]*qemu-system[^/\0]*\0/.test(argv) && argv.includes(marker)) pids.push(Number(d));
    } catch {}
  }
  return pids;
}

/** Poll until f() is true; resolves with the time it took, or null after timeoutMs. */
export async function until(f: () => boolean, timeoutMs: number, stepMs = 20): Promise<number | null> {
  const t0 = performance.now();
  while (!f()) {
    if (performance.now() - t0 > timeoutMs) return null;
    await Bun.sleep(stepMs);
  }
  return performance.now() - t0;
}

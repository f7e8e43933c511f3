/**
 * The Ganeti OS API scripts (create, import, export, rename, verify). The
 * files in the OS definition directory are two-line wrappers that call
 * `snf-image os <script>`; this module parses the environment and hands over
 * to the library functions.
 */
import { defineCommand } from "citty";
import { loadConfig } from "../config.ts";
import { deploy, renameGuest } from "../deploy.ts";
import { parseCreateEnv, parseGanetiEnv, parseRenameEnv, parseTransferEnv, type Script } from "../ganeti/env.ts";
import { describeSweep, sweepLeftovers } from "../leftovers.ts";
import { log, setDebug } from "../log.ts";
import { openMonitor } from "../monitor.ts";
import { checkParams, mergeParams } from "../params.ts";
import { exportDisk, importDisk } from "../transfer.ts";
import { ReportedFailure } from "../errors.ts";
import { runScript } from "./run.ts";

/**
 * Parse the Ganeti environment, then drop the OS parameters (OSP_IMG_PASSWD…)
 * from this process's environment, so that no child (qemu, ssh-keygen, the
 * progress monitor, decompressors) can inherit them. Bun.spawn's default
 * environment is the one at start: every spawn passes `env` explicitly.
 */
function takeGanetiEnv<E>(parse: () => E): E {
  const env = parse();
  for (const k of Object.keys(process.env)) if (k.startsWith("OSP_")) delete process.env[k];
  return env;
}

async function create(signal: AbortSignal): Promise<void> {
  sweep();
  const env = takeGanetiEnv(() => parseCreateEnv());
  const config = loadConfig();
  setDebug(config.IMAGE_DEBUG || env.debugLevel > 0);
  for (const w of config.warnings) log.warn(w);
  const monitor = openMonitor({ program: config.PROGRESS_MONITOR, instance: env.instance.name });
  const t0 = performance.now();
  try {
    log.info(`${env.instance.reinstall ? "reinstalling" : "creating"} ${env.instance.name} (${env.instance.os ?? env.osName})`);
    const r = await deploy(env, config, monitor, signal);
    log.success(
      `${env.instance.name} deployed in ${((performance.now() - t0) / 1000).toFixed(1)} s (copy ${(r.copyMs / 1000).toFixed(1)} s, helper ${(r.helperMs / 1000).toFixed(1)} s under ${r.accel})`,
    );
  } catch (e) {
    monitor.send({ type: "image-error", messages: [e instanceof Error ? e.message : String(e)] });
    throw e;
  } finally {
    await monitor.close();
  }
}

async function rename(signal: AbortSignal): Promise<void> {
  sweep();
  const env = takeGanetiEnv(() => parseRenameEnv());
  if (env.instance.oldName === env.instance.name) {
    // Ganeti also calls rename after every import, with the same name: leave the disk untouched.
    log.info(`instance name ${env.instance.name} is unchanged: nothing to rename`);
    return;
  }
  const config = loadConfig();
  setDebug(config.IMAGE_DEBUG || env.debugLevel > 0);
  const monitor = openMonitor({ program: config.PROGRESS_MONITOR, instance: env.instance.name });
  try {
    await renameGuest(env, config, monitor, signal);
  } finally {
    await monitor.close();
  }
}

/** Remove what dead runs left behind (never a live run's), and say so in one line. */
function sweep(): void {
  const line = describeSweep(sweepLeftovers());
  if (line) log.warn(line);
}

async function verify(args: string[]): Promise<void> {
  const checks = args.length ? args : ["parameters"];
  for (const c of checks) if (c !== "parameters") throw new Error(`unknown check ${JSON.stringify(c)}: only "parameters" exists`);
  const env = takeGanetiEnv(() => parseGanetiEnv("verify"));
  const config = loadConfig();
  const { problems } = checkParams(mergeParams(config, env.osp), { forVerify: true });
  if (problems.length) {
    for (const p of problems) process.stderr.write(`${p}\n`);
    throw new VerifyFailed(problems.length);
  }
}

/** The problems are already printed, one per line; the summary is the last line. */
export class VerifyFailed extends ReportedFailure {
  constructor(n: number) {
    super(`${n} invalid OS parameter${n === 1 ? "" : "s"}`);
  }
}

const USAGE: Record<Script, string> = {
  create: "create: deploy img_id onto DISK_0_PATH and customize it (Ganeti OS API 20; reads the environment)",
  import: "import: read a disk dump from stdin onto IMPORT_DISK_PATH",
  export: "export: write EXPORT_DISK_PATH to stdout (size to EXP_SIZE_FD)",
  rename: "rename: change the guest's hostname from OLD_INSTANCE_NAME to INSTANCE_NAME",
  verify: "verify parameters: check the OS parameters (OSP_*)",
};

function scriptCommand(name: Script, run: (signal: AbortSignal, args: string[]) => Promise<void>) {
  return defineCommand({
    meta: { name, description: USAGE[name] },
    args: { rest: { type: "positional", required: false, description: name === "verify" ? "checks (parameters)" : "none" } },
    run: ({ rawArgs }) => runScript(name, (signal) => run(signal, rawArgs.filter((a) => !a.startsWith("-")))),
  });
}

export const osCommand = defineCommand({
  meta: { name: "os", description: "Ganeti OS API entry points (called by the scripts in the OS definition directory)" },
  subCommands: {
    create: scriptCommand("create", (s) => create(s)),
    import: scriptCommand("import", (s) => importDisk(takeGanetiEnv(() => parseTransferEnv("import")), s)),
    export: scriptCommand("export", (s) => exportDisk(takeGanetiEnv(() => parseTransferEnv("export")), s)),
    rename: scriptCommand("rename", (s) => rename(s)),
    verify: scriptCommand("verify", (_s, a) => verify(a)),
  },
});

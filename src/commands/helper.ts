/** `snf-image helper build`: build the helper VM image into HELPER_DIR. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { defineCommand } from "citty";
import { loadConfig } from "../config.ts";
import { SnfError } from "../errors.ts";
import { buildHelperImage } from "../helper-image/build.ts";
import { log } from "../log.ts";
import { VERSION } from "../version.ts";
import { runScript } from "./run.ts";

/** Where the guest executable is: next to this binary (build tree), or the package's path. */
export function defaultHelperBinary(): string {
  const candidates = [join(dirname(process.execPath), "snf-image-helper"), "/usr/lib/snf-image/snf-image-helper"];
  return candidates.find((p) => existsSync(p)) ?? candidates[candidates.length - 1]!;
}

const build = defineCommand({
  meta: { name: "build", description: "Build the helper VM (kernel, initramfs, tools disk) from this node's Debian packages" },
  args: {
    out: { type: "string", description: "output directory (default: HELPER_DIR from the config)" },
    helper: { type: "string", description: "the snf-image-helper executable to bake in" },
    "kernel-cache": { type: "string", description: "where the Debian kernel package is unpacked and cached" },
  },
  run: ({ args }) =>
    runScript("helper build", async () => {
      const config = loadConfig();
      const outDir = args.out ?? config.HELPER_DIR;
      const helperBinary = args.helper ?? defaultHelperBinary();
      if (!existsSync(helperBinary)) throw new SnfError(`helper executable ${helperBinary} not found: install snf-image-helper or pass --helper`);
      const t0 = performance.now();
      const m = await buildHelperImage({ outDir, helperBinary, version: VERSION, kernelCacheDir: args["kernel-cache"], log: (l) => log.info(l) });
      log.success(`helper image for protocol ${m.protocol} (kernel ${m.kernel}) built in ${outDir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }),
});

export const helperCommand = defineCommand({
  meta: { name: "helper", description: "Manage the helper VM image" },
  subCommands: { build },
});

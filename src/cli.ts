#!/usr/bin/env bun
/**
 * snf-image: the host executable. The Ganeti OS scripts call `snf-image os
 * <script>`; operators use `doctor`, `helper build` and `deploy` (the same
 * pipeline as create, without Ganeti).
 */
import { defineCommand, runMain } from "citty";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: { name: "snf-image", version: VERSION, description: "Ganeti OS provider: deploy images, customize them in a helper VM" },
  subCommands: {
    os: () => import("./commands/os.ts").then((m) => m.osCommand),
    deploy: () => import("./commands/deploy.ts").then((m) => m.deployCommand),
    helper: () => import("./commands/helper.ts").then((m) => m.helperCommand),
    doctor: () => import("./commands/doctor.ts").then((m) => m.doctorCommand),
  },
});

runMain(main);

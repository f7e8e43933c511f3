/** `snf-image doctor [--json]`: is this node ready to deploy, and if not, what to fix. */
import { defineCommand } from "citty";
import { runCleanups, signalAbort } from "../cleanup.ts";
import { renderCheck, renderSummary } from "../doctor/render.ts";
import { runDoctor } from "../doctor/run.ts";

export const doctorCommand = defineCommand({
  meta: { name: "doctor", description: "Check this node (config, images, helper, qemu/KVM with a test boot, OS definition, Ganeti); exit 0 when it can deploy" },
  args: {
    json: { type: "boolean", description: "print the report as JSON on stdout (schema: DoctorReportSchema)" },
    "no-boot": { type: "boolean", description: "skip the helper VM test boot" },
    verbose: { type: "boolean", description: "show every detail line" },
  },
  async run({ args }) {
    const ac = signalAbort();
    let code = 1;
    try {
      const report = await runDoctor({
        noBoot: args["no-boot"],
        signal: ac.signal,
        onCheck: args.json ? undefined : (c) => process.stdout.write(`${renderCheck(c, args.verbose)}\n`),
      });
      if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else process.stdout.write(`${renderSummary(report)}\n`);
      code = report.ok ? 0 : 1;
    } catch (e) {
      process.stderr.write(`snf-image doctor: ERROR: internal error: ${(e as Error)?.message ?? String(e)}\n`);
      code = 2;
    }
    await runCleanups();
    process.exit(code);
  },
});

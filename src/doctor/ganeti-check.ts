/**
 * doctor: when Ganeti is installed and this node is in a running cluster,
 * `gnt-os diagnose` reports snf-image valid on this node.
 */
import fs from "node:fs";
import os from "node:os";
import { type CheckOutcome, fail, ok, warn } from "./schema.ts";

export const SBIN = "/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/bin";
export const SSCONF_CLUSTER = "/var/lib/ganeti/ssconf_cluster_name";
const TIMEOUT_MS = 60_000;

export interface DiagnoseVerdict {
  found: boolean;
  globalStatus: string | null;
  /** Status on the node named, when the output lists it. */
  nodeStatus: string | null;
  /** Reason text following an invalid status, if any. */
  reason: string | null;
}

/**
 * Parse `gnt-os diagnose` output for one OS (pure). Ganeti prints
 * "OS: NAME [global status: valid]" then, per node, "Node: NODE, status: …".
 */
export function parseDiagnose(text: string, osName: string, nodeNames: string[]): DiagnoseVerdict {
  const lines = text.split("\n");
  const head = new RegExp(`^\\s*(?:OS:\\s*)?${osName.replace(/[-.]/g, "\\$&")}\\s*\\[global status:\\s*([^\\]]+)\\]`);
  const start = lines.findIndex((l) => head.test(l));
  if (start < 0) return { found: false, globalStatus: null, nodeStatus: null, reason: null };
  const globalStatus = head.exec(lines[start]!)![1]!.trim();
  let nodeStatus: string | null = null;
  let reason: string | null = null;
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i]!;
    if (/^\S/.test(l) && !/^\s*Node:/.test(l)) break; // next OS block
    const m = /Node:\s*([^,\s]+),?\s*status:\s*(\w+)(.*)$/.exec(l);
    if (m && nodeNames.some((n) => n === m[1] || m[1]!.split(".")[0] === n.split(".")[0])) {
      nodeStatus = m[2]!;
      if (nodeStatus !== "valid") reason = m[3]!.trim() || null;
    }
  }
  return { found: true, globalStatus, nodeStatus, reason };
}

/** Runs a Ganeti client command, bounded by TIMEOUT_MS. */
export async function runGanetiTool(argv: string[]): Promise<{ out: string; code: number; timedOut: boolean }> {
  const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.kill("SIGKILL");
  }, TIMEOUT_MS);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { out: out + err, code, timedOut };
}

export async function checkGaneti(osName = "snf-image"): Promise<CheckOutcome> {
  if (process.env.SNF_IMAGE_OS_SEARCH_PATH) {
    // The OS definition checked above is not where Ganeti looks: its verdict would be about another copy.
    return warn("OS search path overridden (SNF_IMAGE_OS_SEARCH_PATH): gnt-os diagnose skipped", "unset SNF_IMAGE_OS_SEARCH_PATH to check what Ganeti itself sees");
  }
  const gntOs = Bun.which("gnt-os", { PATH: SBIN });
  if (!gntOs) return warn("Ganeti is not installed on this node: gnt-os diagnose skipped", "apt-get install ganeti and join this node to a cluster");
  if (!fs.existsSync(SSCONF_CLUSTER)) {
    return warn("Ganeti is installed but this node is in no cluster: gnt-os diagnose skipped", "gnt-cluster init (or gnt-node add this node), then run snf-image doctor again");
  }
  const r = await runGanetiTool([gntOs, "diagnose"]);
  if (r.timedOut) return fail(`gnt-os diagnose did not answer within ${TIMEOUT_MS / 1000} s`, "check the Ganeti daemons (systemctl status ganeti)");
  if (r.code !== 0) {
    const last = r.out.trim().split("\n").pop() ?? "";
    return warn(`gnt-os diagnose failed (exit ${r.code}): ${last}`, "run on the master node, or check that the Ganeti daemons run (systemctl status ganeti)");
  }
  const names = [os.hostname()];
  try {
    const h = Bun.spawnSync(["hostname", "-f"], { stdout: "pipe", stderr: "ignore" });
    const fqdn = h.stdout.toString().trim();
    if (fqdn) names.push(fqdn);
  } catch {}
  const v = parseDiagnose(r.out, osName, names);
  if (!v.found) return fail(`gnt-os diagnose does not list ${osName}`, "install snf-image-host on every node (Ganeti needs the OS on all nodes)");
  if (v.nodeStatus && v.nodeStatus !== "valid")
    return fail(`gnt-os diagnose: ${osName} is ${v.nodeStatus} on this node${v.reason ? ` ${v.reason}` : ""}`, "fix the os-definition check above, then gnt-os diagnose again");
  if (v.globalStatus !== "valid") return fail(`gnt-os diagnose: ${osName} global status ${v.globalStatus}`, "install the same snf-image-host on every node");
  return ok(`gnt-os diagnose: ${osName} valid${v.nodeStatus ? " on this node" : ""} (global status valid)`);
}

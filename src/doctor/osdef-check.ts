/**
 * doctor: the Ganeti OS definition is installed in an OS search path, speaks
 * API version 20 and its scripts are executable and point at an executable.
 */
import fs from "node:fs";
import path from "node:path";
import { type CheckOutcome, fail, ok } from "./schema.ts";

/** Debian's Ganeti OS search path, in the order Ganeti looks. */
export const GANETI_OS_SEARCH_PATH = ["/srv/ganeti/os", "/usr/local/lib/ganeti/os", "/usr/lib/ganeti/os", "/usr/share/ganeti/os"];
export const OS_NAME = "snf-image";
export const OS_API_VERSION = 20;
export const OS_SCRIPTS = ["create", "import", "export", "rename", "verify"] as const;
export const OS_FILES = ["ganeti_api_version", "variants.list", "parameters.list"] as const;

/** SNF_IMAGE_OS_SEARCH_PATH (colon-separated) overrides the default, for tests and odd builds. */
export function osSearchPath(env: Record<string, string | undefined>): string[] {
  const o = env.SNF_IMAGE_OS_SEARCH_PATH;
  return o ? o.split(":").filter(Boolean) : GANETI_OS_SEARCH_PATH;
}

const isExecFile = (p: string): boolean => {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  return !!st && st.isFile() && (st.mode & 0o111) !== 0;
};

/** The executable an `exec X os <script>` wrapper hands over to (pure). */
export function wrapperTarget(text: string, dir: string): string | null {
  const m = /^\s*exec\s+("[^"]+"|\S+)\s+os\s/m.exec(text);
  if (!m) return null;
  const t = m[1]!.replace(/^"|"$/g, "").replace("${0%/*}", dir);
  return path.resolve(dir, t);
}

/** Problems of one OS directory, one line each (pure on the file system). */
export function osDirProblems(dir: string): string[] {
  const problems: string[] = [];
  for (const f of OS_FILES) {
    if (!fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.isFile()) problems.push(`${f} missing`);
  }
  const api = fs.statSync(path.join(dir, "ganeti_api_version"), { throwIfNoEntry: false })?.isFile()
    ? fs.readFileSync(path.join(dir, "ganeti_api_version"), "utf8").split("\n").map((l) => l.trim()).filter(Boolean)
    : [];
  if (api.length && !api.includes(String(OS_API_VERSION))) problems.push(`ganeti_api_version says ${api.join(",")}, not ${OS_API_VERSION}`);
  const variants = path.join(dir, "variants.list");
  if (fs.existsSync(variants) && !fs.readFileSync(variants, "utf8").split("\n").map((l) => l.trim()).includes("default")) problems.push("variants.list lacks the default variant");
  const targets = new Set<string>();
  for (const s of OS_SCRIPTS) {
    const p = path.join(dir, s);
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st?.isFile()) {
      problems.push(`${s} missing`);
      continue;
    }
    if ((st.mode & 0o111) === 0) {
      problems.push(`${s} is not executable (mode ${(st.mode & 0o777).toString(8)})`);
      continue;
    }
    const t = wrapperTarget(fs.readFileSync(p, "utf8").slice(0, 4096), dir);
    if (t) targets.add(t);
  }
  for (const t of targets) if (!isExecFile(t)) problems.push(`the scripts run ${t}, which is missing or not executable`);
  return problems;
}

export function checkOsDefinition(env: Record<string, string | undefined>): CheckOutcome {
  const search = osSearchPath(env);
  const found = search.map((d) => path.join(d, OS_NAME)).filter((d) => fs.statSync(d, { throwIfNoEntry: false })?.isDirectory());
  if (!found.length) {
    return fail(`OS definition ${OS_NAME} not found in the Ganeti OS search path (${search.join(", ")})`, "install the snf-image-host package (it ships /usr/share/ganeti/os/snf-image)");
  }
  // Ganeti uses the first match; later ones are shadowed.
  const dir = found[0]!;
  const details = found.slice(1).map((d) => `${d} is shadowed by ${dir}`);
  const problems = osDirProblems(dir);
  if (problems.length) {
    const fix = problems.some((p) => p.includes("not executable"))
      ? `chmod 755 ${OS_SCRIPTS.map((s) => path.join(dir, s)).join(" ")} (or reinstall snf-image-host)`
      : "reinstall snf-image-host (apt-get install --reinstall snf-image-host)";
    return fail(`OS definition ${dir}: ${problems.join("; ")}`, fix, { details: [...problems, ...details] });
  }
  return ok(`OS definition ${dir}: API ${OS_API_VERSION}, ${OS_SCRIPTS.length} executable scripts`, details.length ? { details } : {});
}

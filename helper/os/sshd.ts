/**
 * The image's sshd configuration as sshd itself reads it: /etc/ssh/sshd_config
 * with Include directives expanded in place (relative to /etc/ssh, globs in
 * the last component, files in lexical order). Only global directives count:
 * a Match block runs to the end of its file.
 */
import * as path from "node:path";
import { listDirIn, readTextIn } from "../lib/safepath.ts";

export interface SshdDirective {
  /** lower-case keyword */
  key: string;
  args: string[];
  /** guest path of the file it came from */
  file: string;
}

/** Split a config line into words; double quotes group, as in sshd's argv_split. */
export function splitWords(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inQ = false;
  let have = false;
  for (const ch of line) {
    if (inQ) {
      if (ch === '"') inQ = false;
      else cur += ch;
    } else if (ch === '"') {
      inQ = true;
      have = true;
    } else if (/\s/.test(ch)) {
      if (have || cur) out.push(cur);
      cur = "";
      have = false;
    } else {
      cur += ch;
      have = true;
    }
  }
  if (have || cur) out.push(cur);
  return out;
}

function globToRegExp(g: string): RegExp {
  const re = g.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]");
  return new RegExp(`^${re}$`);
}

function expandInclude(root: string, pattern: string): string[] {
  const p = pattern.startsWith("/") ? pattern : path.posix.join("/etc/ssh", pattern);
  const dir = path.posix.dirname(p);
  const base = path.posix.basename(p);
  if (!/[*?]/.test(base)) return [p];
  const re = globToRegExp(base);
  return listDirIn(root, dir)
    .filter((n) => re.test(n) && !n.startsWith("."))
    .map((n) => path.posix.join(dir, n));
}

function readFile(root: string, file: string, depth: number, out: SshdDirective[]): void {
  if (depth > 16) throw new Error("sshd_config Include nesting too deep");
  const text = readTextIn(root, file);
  if (text === undefined) return;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    const key = (m ? m[1]! : line).toLowerCase();
    const args = m ? splitWords(m[2]!.replace(/\s+#.*$/, "")) : [];
    if (key === "match") return;
    if (key === "include") {
      for (const pat of args) for (const f of expandInclude(root, pat)) readFile(root, f, depth + 1, out);
      continue;
    }
    out.push({ key, args, file });
  }
}

export function readSshdConfig(root: string): SshdDirective[] {
  const out: SshdDirective[] = [];
  readFile(root, "/etc/ssh/sshd_config", 0, out);
  return out;
}

/** AuthorizedKeysFile value list (sshd: the first occurrence wins); default as OpenSSH. */
export function authorizedKeysFiles(d: SshdDirective[]): string[] {
  const first = d.find((x) => x.key === "authorizedkeysfile");
  return first && first.args.length ? first.args : [".ssh/authorized_keys", ".ssh/authorized_keys2"];
}

/** HostKey paths (every occurrence counts). */
export function hostKeys(d: SshdDirective[]): string[] {
  return d.filter((x) => x.key === "hostkey" && x.args[0]).map((x) => x.args[0]!);
}

/** Expand %h %u %% (and %U uid) in an AuthorizedKeysFile token; relative results are under home. */
export function expandAuthorizedKeysPath(token: string, user: { name: string; home: string; uid: number }): string {
  const expanded = token.replace(/%(.)/g, (all, c: string) => {
    switch (c) {
      case "%":
        return "%";
      case "h":
        return user.home;
      case "u":
        return user.name;
      case "U":
        return String(user.uid);
      default:
        throw new Error(`AuthorizedKeysFile ${token}: unsupported token %${c}`);
    }
  });
  return expanded.startsWith("/") ? expanded : path.posix.join(user.home || "/", expanded);
}

/**
 * Where each Linux distribution keeps its hostname, and how /etc/hosts and
 * /etc/mailname are kept in step.
 */
import type { Distro } from "./distro.ts";
import { existsIn, readTextIn, writeFileIn } from "../lib/safepath.ts";

/** A hostname we are willing to write into config files. */
export function validHostname(name: string): boolean {
  return name.length <= 253 && /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(name);
}

function setVar(text: string, key: string, value: string): string {
  const re = new RegExp(`^\\s*${key}=.*$`, "m");
  const line = `${key}=${value}`;
  if (re.test(text)) return text.replace(new RegExp(`^\\s*${key}=.*$`, "gm"), line);
  return `${text}${text === "" || text.endsWith("\n") ? "" : "\n"}${line}\n`;
}

/**
 * Write the hostname where the image keeps it. Debian-style /etc/hostname
 * wins whenever it exists; otherwise the distro's own file. Returns the
 * guest path written.
 */
export function writeHostnameFile(root: string, distro: Distro, hostname: string): string {
  if (existsIn(root, "/etc/hostname")) {
    writeFileIn(root, "/etc/hostname", `${hostname}\n`);
    return "/etc/hostname";
  }
  switch (distro) {
    case "redhat": {
      const f = "/etc/sysconfig/network";
      if (existsIn(root, "/etc/sysconfig")) {
        writeFileIn(root, f, setVar(readTextIn(root, f) ?? "", "HOSTNAME", hostname));
        return f;
      }
      break;
    }
    case "suse":
    case "slackware":
      writeFileIn(root, "/etc/HOSTNAME", `${hostname}\n`);
      return "/etc/HOSTNAME";
    case "gentoo": {
      const f = "/etc/conf.d/hostname";
      if (existsIn(root, "/etc/conf.d")) {
        writeFileIn(root, f, setVar(readTextIn(root, f) ?? "", "hostname", `"${hostname}"`));
        return f;
      }
      break;
    }
    default:
      break;
  }
  // arch, coreos, debian without the file, unknown: systemd's /etc/hostname.
  writeFileIn(root, "/etc/hostname", `${hostname}\n`);
  return "/etc/hostname";
}

/**
 * /etc/hosts: replace the 127.0.1.1 line (all of them collapse into one) or
 * add one after the 127.0.0.1 line. Returns the new text.
 */
export function rewriteHosts(text: string, hostname: string): string {
  const short = hostname.split(".")[0]!;
  const entry = hostname.includes(".") && short !== hostname ? `127.0.1.1\t${hostname}\t${short}` : `127.0.1.1\t${hostname}`;
  const lines = text.split("\n");
  const out: string[] = [];
  let placed = false;
  for (const line of lines) {
    if (/^\s*127\.0\.1\.1\s/.test(line) || /^\s*127\.0\.1\.1$/.test(line)) {
      if (!placed) out.push(entry);
      placed = true;
      continue;
    }
    out.push(line);
  }
  if (!placed) {
    const i = out.findIndex((l) => /^\s*127\.0\.0\.1\s/.test(l));
    if (i >= 0) out.splice(i + 1, 0, entry);
    else {
      if (out.length && out[out.length - 1] === "") out.splice(out.length - 1, 0, entry);
      else out.push(entry, "");
    }
  }
  return out.join("\n");
}

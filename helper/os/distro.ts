/**
 * Which Linux distribution family the mounted image is: /etc/os-release
 * (ID, then ID_LIKE) first, then the classic marker files.
 */
import type { OsInfo } from "../task.ts";
import { existsIn, readTextIn } from "../lib/safepath.ts";

export type Distro = OsInfo["distro"];

const BY_ID: Record<string, Distro> = {
  debian: "debian",
  ubuntu: "debian",
  linuxmint: "debian",
  raspbian: "debian",
  devuan: "debian",
  kali: "debian",
  rhel: "redhat",
  centos: "redhat",
  fedora: "redhat",
  rocky: "redhat",
  almalinux: "redhat",
  ol: "redhat",
  amzn: "redhat",
  opensuse: "suse",
  "opensuse-leap": "suse",
  "opensuse-tumbleweed": "suse",
  sles: "suse",
  suse: "suse",
  arch: "arch",
  archarm: "arch",
  manjaro: "arch",
  gentoo: "gentoo",
  slackware: "slackware",
  coreos: "coreos",
  flatcar: "coreos",
};

const MARKERS: [string, Distro][] = [
  ["/etc/debian_version", "debian"],
  ["/etc/redhat-release", "redhat"],
  ["/etc/SuSE-release", "suse"],
  ["/etc/SUSE-brand", "suse"],
  ["/etc/arch-release", "arch"],
  ["/etc/gentoo-release", "gentoo"],
  ["/etc/slackware-version", "slackware"],
];

/** KEY=value pairs of an os-release style file (quotes removed). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) continue;
    let val = m[2]!.trim();
    if ((val.startsWith('"') && val.endsWith('"')) || (val.startsWith("'") && val.endsWith("'"))) val = val.slice(1, -1);
    out[m[1]!] = val.replace(/\\(.)/g, "$1");
  }
  return out;
}

export function detectDistro(root: string): Distro {
  const text = readTextIn(root, "/etc/os-release") ?? readTextIn(root, "/usr/lib/os-release");
  if (text !== undefined) {
    const osr = parseOsRelease(text);
    const ids = [osr.ID ?? "", ...(osr.ID_LIKE ?? "").split(/\s+/)].map((s) => s.toLowerCase()).filter(Boolean);
    for (const id of ids) {
      const d = BY_ID[id] ?? (id.startsWith("opensuse") ? "suse" : undefined);
      if (d) return d;
    }
  }
  for (const [file, d] of MARKERS) if (existsIn(root, file)) return d;
  return "unknown";
}

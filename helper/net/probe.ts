/**
 * What networking the mounted image actually uses, read from its files
 * (never from /etc/debian_version and never by running anything from it).
 */
import { existsIn, isDirIn, lexistsIn, listDirIn, readLinkIn } from "../lib/safepath.ts";

function maskedIn(root: string, unit: string): boolean {
  return ["/etc/systemd/system", "/run/systemd/system"].some((dir) => readLinkIn(root, `${dir}/${unit}`) === "/dev/null");
}

/** Is a systemd unit enabled in the image (a link in some /etc/systemd/system/*.wants or alias), and not masked? */
export function unitEnabled(root: string, unit: string, aliases: string[] = []): boolean {
  if (maskedIn(root, unit)) return false;
  for (const alias of aliases) if (lexistsIn(root, `/etc/systemd/system/${alias}`)) return true;
  for (const entry of listDirIn(root, "/etc/systemd/system")) {
    if (!entry.endsWith(".wants") && !entry.endsWith(".requires")) continue;
    if (lexistsIn(root, `/etc/systemd/system/${entry}/${unit}`)) return true;
  }
  return false;
}

export function anyExists(root: string, paths: string[]): boolean {
  return paths.some((p) => existsIn(root, p));
}

export const hasNetplan = (root: string): boolean =>
  isDirIn(root, "/etc/netplan") &&
  anyExists(root, ["/usr/sbin/netplan", "/usr/bin/netplan", "/lib/netplan/generate", "/usr/lib/netplan/generate", "/usr/libexec/netplan/generate"]);

export const networkManagerInstalled = (root: string): boolean => anyExists(root, ["/usr/sbin/NetworkManager", "/usr/bin/NetworkManager"]);

export const networkManagerEnabled = (root: string): boolean =>
  networkManagerInstalled(root) && unitEnabled(root, "NetworkManager.service", ["dbus-org.freedesktop.NetworkManager.service"]);

export const networkdEnabled = (root: string): boolean =>
  unitEnabled(root, "systemd-networkd.service", ["dbus-org.freedesktop.network1.service"]) || unitEnabled(root, "systemd-networkd.socket");

export const ifupdownInstalled = (root: string): boolean => anyExists(root, ["/sbin/ifup", "/usr/sbin/ifup"]) && isDirIn(root, "/etc/network");

export const ifupdownEnabled = (root: string): boolean => ifupdownInstalled(root) && unitEnabled(root, "networking.service");

/**
 * A SUSE-style network tree: /etc/sysconfig/network is a directory (on Red
 * Hat it is a file) holding wicked's/sysconfig's global config, or wicked
 * itself is there.
 */
export const hasWicked = (root: string): boolean =>
  isDirIn(root, "/etc/sysconfig/network") &&
  (existsIn(root, "/etc/sysconfig/network/config") ||
    anyExists(root, ["/usr/sbin/wicked", "/sbin/wicked"]) ||
    unitEnabled(root, "wicked.service", ["network.service"]));

export const hasIfcfg = (root: string): boolean => isDirIn(root, "/etc/sysconfig/network-scripts");

/**
 * /etc/snf-image/snf-image.conf as shipped: every ConfigSchema setting,
 * commented out, with what it does and its default. Generated from
 * ConfigSchema so the file cannot miss a setting (test/unit/doctor-packaging.test.ts).
 */
import { ConfigSchema, OS_PARAMETERS } from "../src/config.ts";

type Key = keyof typeof ConfigSchema.entries;

/** One comment paragraph per setting. */
export const SETTING_HELP: Record<Key, string> = {
  IMAGE_DIR: "Directory of local images: img_id NAME or local://NAME reads IMAGE_DIR/NAME (or NAME.<img_format>).",
  HELPER_DIR: "Where snf-image-update-helper puts the helper VM image (kernel, initramfs, tools disk, manifest.json).",
  HELPER_SOFT_TIMEOUT: "Seconds the helper VM may run before it is stopped with SIGTERM (suffixes s, m, h, d allowed).",
  HELPER_HARD_TIMEOUT: "Seconds after the soft timeout before the helper VM is killed with SIGKILL.",
  HELPER_USER: "Unprivileged user the helper VM (qemu -runas) runs as. Never root.",
  HELPER_MEMORY: "Memory of the helper VM in MiB (128-65536).",
  HELPER_DEBUG: "yes: keep the helper VM's console verbose and copy it into the Ganeti OS log.",
  HELPER_ACCEL: "qemu accelerator of the helper VM: auto (KVM where it really works, else TCG), kvm or tcg.",
  HELPER_RESUME: "auto: resume the helper VM from a state saved in HELPER_DIR/snapshots (made by the first boot, remade when qemu, the helper image or the machine change); off: always boot it.",
  PROGRESS_MONITOR: "Program that receives progress events as JSON lines on its stdin (empty: none).",
  IMAGE_DEBUG: "yes: debug logging in the OS scripts (as with Ganeti's OS debug level).",
  CLOUD_INIT_DEBUG: "yes: turn on cloud-init debugging inside deployed images that use cloud-init.",
  DHCP_TAGS: "Network tags that mean IPv4 DHCP for a NIC (space-separated).",
  STATEFUL_DHCPV6_TAGS: "Network tags that mean stateful DHCPv6 (space-separated).",
  STATELESS_DHCPV6_TAGS: "Network tags that mean SLAAC with stateless DHCPv6 (space-separated).",
  DEFAULT_NIC_CONFIG: "Configuration of a single NIC without IP information: dhcp, dhcpv6, slaac, slaac_dhcp, dhcp+dhcpv6, dhcp+slaac, dhcp+slaac_dhcp or empty.",
  QEMU: "The qemu executable (name looked up in PATH, or an absolute path).",
  HTTP_MAX_REDIRECTS: "Redirects followed for http(s):// images and config_url (0-20); only to http(s).",
  HTTP_TIMEOUT: "Seconds an http(s) download (image, config_url) may go without receiving a byte (connecting, response head or body) before it fails (suffixes s, m, h, d allowed).",
  CONFIG_URL_MAX_BYTES: "Largest document config_url may return, in bytes.",
  ZERO_DISK_TAIL: "Zero the disk past the image (old data of a reused disk): no, cheap (only where no data is written: file hole punch, offloaded write-zeroes) or always.",
  WINDOWS_TIMEZONE: "Time zone written into generated Windows answer files (unattend.xml TimeZone; its index in sysprep.inf).",
  IMAGE_VERIFY:
    "Check images against a signed SHA256SUMS/SHA512SUMS file next to them: off, if-present (check when a sums file lists the image; it must then be signed by IMAGE_KEYRING) or required (refuse images no signed sums file lists).",
  IMAGE_KEYRING: "OpenPGP keyring (gpgv --keyring) whose keys may sign the sums files, e.g. /usr/share/keyrings/debian-archive-keyring.gpg.",
};

/** Default of a setting as written in the file (string form). */
export function defaultText(key: Key): string {
  const d = (ConfigSchema.entries[key] as { default?: unknown }).default;
  return typeof d === "string" ? d : String(d ?? "");
}

const wrap = (text: string, width = 76): string[] => {
  const out: string[] = [];
  let cur = "";
  for (const w of text.split(" ")) {
    if (cur && cur.length + 1 + w.length > width) {
      out.push(cur);
      cur = w;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) out.push(cur);
  return out;
};

export function renderConfigFile(): string {
  const lines = [
    "# snf-image configuration (/etc/snf-image/snf-image.conf)",
    "#",
    '# KEY="value" lines; the file is parsed, never run by a shell: no $ expansion,',
    "# no commands. Every setting is shown commented out with its default; remove",
    "# the leading # to change it. `snf-image doctor` checks this file.",
    "#",
    `# OS parameters may be preset here in upper case (${OS_PARAMETERS.slice(0, 3).map((p) => p.toUpperCase()).join(", ")}, ...);`,
    "# an instance's own -O value wins.",
    "",
  ];
  for (const key of Object.keys(ConfigSchema.entries) as Key[]) {
    for (const l of wrap(SETTING_HELP[key])) lines.push(`# ${l}`);
    lines.push(`#${key}="${defaultText(key)}"`, "");
  }
  return lines.join("\n");
}

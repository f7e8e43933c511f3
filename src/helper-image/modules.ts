/**
 * Kernel module selection, computed on the host with kmod's
 * `modprobe -d ROOT -S VERSION --show-depends` (softdeps included), because
 * busybox modprobe in the guest ignores softdeps.
 */
import path from "node:path";
import { exec, requireTool } from "../exec.ts";

/** Loaded by the initramfs shim, in this order (plus dependencies). */
export const BOOT_MODULES = ["virtio_mmio", "virtio_pci", "virtio_blk", "crc32c_intel", "ext4"];
/** Shipped on the tools disk for modprobe on demand. */
export const DEMAND_MODULES = [
  "qemu_fw_cfg", "virtio_console", "virtio_rng", "virtio_scsi", "sd_mod",
  "vfat", "msdos", "nls_cp437", "nls_iso8859-1", "nls_utf8", "nls_ascii",
  "xfs", "btrfs", "fuse", "loop", "isofs", "ufs",
];

/** Parse --show-depends output into module paths relative to lib/modules/VERSION (pure). */
export function parseShowDepends(text: string, modRoot: string, version: string): string[] {
  const prefix = path.join(modRoot, "lib/modules", version) + "/";
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^insmod\s+(\S+)/.exec(line.trim());
    if (!m) continue;
    const p = path.normalize(m[1]!);
    if (!p.startsWith(prefix)) throw new Error(`module outside ${prefix}: ${p}`);
    out.push(p.slice(prefix.length));
  }
  return out;
}

/** Ordered, de-duplicated insmod list (relative paths) for a set of modules. */
export async function resolveModules(names: string[], modRoot: string, version: string): Promise<string[]> {
  requireTool("modprobe", "kmod");
  const seen = new Set<string>();
  const order: string[] = [];
  for (const name of names) {
    const r = await exec(["modprobe", "-d", modRoot, "-S", version, "--show-depends", name]);
    for (const rel of parseShowDepends(r.stdout, modRoot, version)) {
      if (!seen.has(rel)) {
        seen.add(rel);
        order.push(rel);
      }
    }
  }
  return order;
}

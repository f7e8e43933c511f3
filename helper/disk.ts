/**
 * The target disk as the helper sees it: which /dev node has our serial, its
 * partition table (`sfdisk --json`) and each partition's filesystem (`blkid`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import type { DiskInfo, Partition } from "./task.ts";
import type { RunFn } from "./lib/exec.ts";

/**
 * A disk's serial as the kernel shows it: virtio disks have a `serial` file,
 * SCSI disks (the instance disks, hot-added to the helper's virtio-scsi
 * controller) carry it in VPD page 0x80 (4-byte header, then the serial).
 */
function serialOf(sysBlock: string, name: string): string | undefined {
  try {
    return fs.readFileSync(path.join(sysBlock, name, "serial"), "utf8").trim();
  } catch {
    // not a virtio disk
  }
  try {
    const pg = fs.readFileSync(path.join(sysBlock, name, "device", "vpd_pg80"));
    if (pg.length < 4 || pg[1] !== 0x80) return undefined;
    const len = Math.min(pg.readUInt16BE(2), pg.length - 4);
    return pg.subarray(4, 4 + len).toString("latin1").replace(/\0+$/, "").trim();
  } catch {
    return undefined;
  }
}

/** /dev node of the disk whose serial is `serial` (searching sysBlock), undefined if none. */
export function diskBySerial(serial: string, sysBlock = "/sys/block"): string | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(sysBlock).sort();
  } catch {
    return undefined;
  }
  for (const name of names) if (serialOf(sysBlock, name) === serial) return `/dev/${name}`;
  return undefined;
}

/**
 * /dev node of the instance disk whose serial is `serial`, or a clear error.
 * SNF_HELPER_DISK overrides the lookup (tests hand in a loop device or an
 * image file); SNF_HELPER_SYS_BLOCK replaces /sys/block.
 */
export function findDiskBySerial(serial: string, env: Record<string, string | undefined> = process.env): string {
  if (env.SNF_HELPER_DISK) return env.SNF_HELPER_DISK;
  const sysBlock = env.SNF_HELPER_SYS_BLOCK || "/sys/block";
  if (!fs.existsSync(sysBlock)) throw new Error(`cannot list ${sysBlock}`);
  const dev = diskBySerial(serial, sysBlock);
  if (!dev) throw new Error(`no disk with serial ${serial} found`);
  return dev;
}

/** Wait (bounded) until every serial has a disk: SCSI disks appear one by one after a hot-add. */
export async function waitForDisks(serials: string[], sysBlock = "/sys/block", timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const missing = serials.filter((s) => !diskBySerial(s, sysBlock));
    if (missing.length === 0) return;
    if (Date.now() > end) throw new Error(`no disk with serial ${missing.join(", ")} appeared within ${timeoutMs / 1000} s`);
    await Bun.sleep(10);
  }
}

const SfdiskSchema = v.object({
  partitiontable: v.object({
    label: v.string(),
    id: v.optional(v.string()),
    device: v.optional(v.string()),
    sectorsize: v.optional(v.number()),
    firstlba: v.optional(v.number()),
    lastlba: v.optional(v.number()),
    partitions: v.optional(
      v.array(
        v.object({
          node: v.string(),
          start: v.number(),
          size: v.number(),
          type: v.string(),
          uuid: v.optional(v.string()),
          name: v.optional(v.string()),
        }),
      ),
      [],
    ),
  }),
});

/** msdos partition types of an extended partition (CHS, LBA, Linux). */
const EXTENDED_TYPES: ReadonlySet<string> = new Set(["5", "f", "85"]);

/** A disk's partition table without the per-partition filesystem probe (what FixPartitionTable plans on). */
export type PartitionTable = Omit<DiskInfo, "dev" | "sizeBytes" | "table"> & { table: "msdos" | "gpt" };

/** Partition number from an sfdisk node name (vda1 → 1, nvme0n1p2 → 2, disk.img5 → 5). */
function nodeNumber(device: string, node: string): number {
  const rest = device && node.startsWith(device) ? node.slice(device.length) : node;
  const m = /(\d+)$/.exec(rest);
  if (!m) throw new Error(`cannot tell the partition number of ${node}`);
  return Number(m[1]);
}

/** The one parser of `sfdisk --json` (sfdisk's "dos" label is called "msdos" everywhere in the helper). */
export function parseSfdiskJson(json: string): PartitionTable {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new Error("unexpected sfdisk --json output");
  }
  const r = v.safeParse(SfdiskSchema, doc);
  if (!r.success) throw new Error("unexpected sfdisk --json output");
  const t = r.output.partitiontable;
  const table = t.label === "dos" ? "msdos" : t.label === "gpt" ? "gpt" : null;
  if (!table) throw new Error(`unsupported partition table type ${t.label} (only msdos and GPT)`);
  const diskId = (t.id ?? "").replace(/^0x/i, "").toLowerCase().padStart(8, "0");
  const partitions: Partition[] = t.partitions.map((p) => {
    const number = nodeNumber(t.device ?? "", p.node);
    const type = p.type.toLowerCase();
    const part: Partition = { number, dev: p.node, startSector: p.start, sizeSectors: p.size, type };
    if (table === "msdos") {
      part.kind = number > 4 ? "logical" : EXTENDED_TYPES.has(type) ? "extended" : "primary";
      part.partUuid = `${diskId}-${number.toString(16).padStart(2, "0")}`;
    } else {
      if (p.uuid) part.partUuid = p.uuid.toLowerCase();
      if (p.name) part.partLabel = p.name;
    }
    return part;
  });
  const out: PartitionTable = { table, sectorSize: t.sectorsize ?? 512, partitions };
  if (t.firstlba !== undefined) out.firstLba = t.firstlba;
  if (t.lastlba !== undefined) out.lastLba = t.lastlba;
  return out;
}

/** `sfdisk --json` of dev: its table, or null when it has none; other sfdisk failures throw. */
export async function readTable(run: RunFn, dev: string): Promise<PartitionTable | null> {
  const r = await run(["sfdisk", "--json", dev], { allowFail: true });
  if (r.exitCode !== 0) {
    if (/does not contain a recognized partition table/i.test(r.stderr)) return null;
    throw new Error(`sfdisk cannot read ${dev}: ${r.stderr.trim().split("\n").pop()?.trim() ?? ""}`);
  }
  return r.stdout.trim() === "" ? null : parseSfdiskJson(r.stdout);
}

/** Parse `blkid -o export` output. */
export function parseBlkidExport(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).replace(/\\(.)/g, "$1");
  }
  return out;
}

/** Size in bytes of a block device (from /sys) or image file. */
export function deviceBytes(dev: string): number {
  const st = fs.statSync(dev);
  if (st.isFile()) return st.size;
  try {
    const sectors = Number(fs.readFileSync(`/sys/class/block/${path.basename(fs.realpathSync(dev))}/size`, "utf8").trim());
    if (Number.isFinite(sectors)) return sectors * 512;
  } catch {
    // fall through
  }
  return st.size;
}

/** Filesystem type/UUID/LABEL of a partition (low-level probe, no cache). */
export async function probePartition(run: RunFn, diskDev: string, p: Partition, sectorSize: number): Promise<Record<string, string>> {
  let cmd: string[];
  if (fs.existsSync(p.dev)) cmd = ["blkid", "-p", "-o", "export", p.dev];
  else if (fs.statSync(diskDev).isFile()) {
    // Image file (tests): probe at the partition's offset.
    cmd = ["blkid", "-p", "-o", "export", "-O", String(p.startSector * sectorSize), "-S", String(p.sizeSectors * sectorSize), diskDev];
  } else return {};
  const r = await run(cmd, { allowFail: true });
  return r.exitCode === 0 ? parseBlkidExport(r.stdout) : {};
}

/**
 * Read the disk's partition table and probe every partition (a disk sfdisk cannot read has table
 * "none"). With `before` (the same disk read earlier, e.g. before FixPartitionTable grew a
 * partition), partitions that kept their number and start keep what was probed then.
 */
export async function readDisk(run: RunFn, dev: string, before?: DiskInfo): Promise<DiskInfo> {
  const sizeBytes = deviceBytes(dev);
  const r = await run(["sfdisk", "--json", dev], { allowFail: true });
  if (r.exitCode !== 0 || r.stdout.trim() === "") {
    return { dev, sizeBytes, sectorSize: 512, table: "none", partitions: [] };
  }
  const t = parseSfdiskJson(r.stdout);
  for (const p of t.partitions) {
    if (p.kind === "extended") continue;
    // a partition that kept its number and start kept its filesystem (growing it does not
    // change its signature): no second blkid under emulation
    const same = before?.partitions.find((o) => o.number === p.number && o.startSector === p.startSector && o.kind === p.kind);
    if (same) {
      if (same.fsType) p.fsType = same.fsType;
      if (same.uuid) p.uuid = same.uuid;
      if (same.label) p.label = same.label;
      continue;
    }
    const b = await probePartition(run, dev, p, t.sectorSize);
    if (b.TYPE) p.fsType = b.TYPE;
    if (b.UUID) p.uuid = b.UUID;
    if (b.LABEL) p.label = b.LABEL;
  }
  return { dev, sizeBytes, ...t };
}

/** Filesystem type on a device as blkid sees it ("" when none). */
export async function probeFsType(run: RunFn, dev: string): Promise<string> {
  const r = await run(["blkid", "-p", "-o", "value", "-s", "TYPE", dev], { allowFail: true });
  return r.exitCode === 0 ? r.stdout.trim() : "";
}

/**
 * The partition an fstab/UUID-style spec names on this disk:
 * UUID=, LABEL=, PARTUUID=, PARTLABEL= and their /dev/disk/by-* forms.
 * Returns null if the spec is not of that kind, undefined if no partition matches.
 */
export function findBySpec(disk: DiskInfo, spec: string): Partition | undefined | null {
  const byPath = /^\/dev\/disk\/by-(uuid|label|partuuid|partlabel)\/(.+)$/.exec(spec);
  const byTag = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.*)$/.exec(spec);
  let key: string;
  let value: string;
  if (byTag) {
    key = byTag[1]!;
    value = byTag[2]!.replace(/^"(.*)"$/, "$1");
  } else if (byPath) {
    key = byPath[1]!.toUpperCase();
    value = byPath[2]!.replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  } else return null;
  const parts = disk.partitions;
  switch (key) {
    case "UUID":
      return parts.find((p) => p.uuid?.toLowerCase() === value.toLowerCase());
    case "LABEL":
      return parts.find((p) => p.label === value);
    case "PARTUUID":
      return parts.find((p) => p.partUuid?.toLowerCase() === value.toLowerCase());
    default:
      return parts.find((p) => p.partLabel === value);
  }
}

/** The kernel's node for sectors [start, start+size) of disk (BSD label partitions show up as vdaN). */
export function kernelPartitionAt(diskDev: string, start: number, size: number, sysBlock = "/sys/class/block"): string | undefined {
  const base = diskDev.replace(/^\/dev\//, "");
  let names: string[];
  try {
    names = fs.readdirSync(`${sysBlock}/${base}`).filter((n) => n.startsWith(base));
  } catch {
    return undefined;
  }
  for (const n of names) {
    try {
      const s = Number(fs.readFileSync(`${sysBlock}/${base}/${n}/start`, "utf8").trim());
      const z = Number(fs.readFileSync(`${sysBlock}/${base}/${n}/size`, "utf8").trim());
      if (s === start && z === size) return `/dev/${n}`;
    } catch {
      // not a partition
    }
  }
  return undefined;
}

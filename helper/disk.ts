/**
 * The target disk as the helper sees it: which /dev node has our serial, its
 * partition table (`sfdisk --json`) and each partition's filesystem (`blkid`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as v from "valibot";
import type { DiskInfo, Partition } from "./task.ts";
import type { RunFn } from "./lib/exec.ts";

/** Partition plus identifiers fstab can name it by. */
export interface PartitionEx extends Partition {
  partUuid?: string;
  partLabel?: string;
}

/**
 * /dev node of the disk whose virtio serial is `serial`. SNF_HELPER_DISK
 * overrides the lookup (tests hand in a loop device or an image file).
 */
export function findDiskBySerial(serial: string, env: Record<string, string | undefined> = process.env): string {
  if (env.SNF_HELPER_DISK) return env.SNF_HELPER_DISK;
  const sysBlock = env.SNF_HELPER_SYS_BLOCK || "/sys/block";
  let names: string[] = [];
  try {
    names = fs.readdirSync(sysBlock).sort();
  } catch {
    throw new Error(`cannot list ${sysBlock}`);
  }
  for (const name of names) {
    let s: string;
    try {
      s = fs.readFileSync(path.join(sysBlock, name, "serial"), "utf8").trim();
    } catch {
      continue;
    }
    if (s === serial) return `/dev/${name}`;
  }
  throw new Error(`no disk with serial ${serial} found`);
}

const SfdiskSchema = v.object({
  partitiontable: v.object({
    label: v.string(),
    id: v.optional(v.string()),
    sectorsize: v.optional(v.number()),
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

const EXTENDED_TYPES = new Set(["5", "f", "85"]);

export function parseSfdiskJson(json: string): Omit<DiskInfo, "dev" | "sizeBytes"> & { partitions: PartitionEx[] } {
  const r = v.safeParse(SfdiskSchema, JSON.parse(json));
  if (!r.success) throw new Error("unexpected sfdisk --json output");
  const t = r.output.partitiontable;
  const table = t.label === "dos" ? "msdos" : t.label === "gpt" ? "gpt" : null;
  if (!table) throw new Error(`unsupported partition table type ${t.label}`);
  const diskId = (t.id ?? "").replace(/^0x/i, "").toLowerCase().padStart(8, "0");
  const partitions: PartitionEx[] = t.partitions.map((p) => {
    const m = /(\d+)$/.exec(p.node);
    if (!m) throw new Error(`cannot tell the partition number of ${p.node}`);
    const number = Number(m[1]);
    const type = p.type.toLowerCase();
    const part: PartitionEx = { number, dev: p.node, startSector: p.start, sizeSectors: p.size, type };
    if (table === "msdos") {
      part.kind = number > 4 ? "logical" : EXTENDED_TYPES.has(type) ? "extended" : "primary";
      part.partUuid = `${diskId}-${number.toString(16).padStart(2, "0")}`;
    } else {
      if (p.uuid) part.partUuid = p.uuid.toLowerCase();
      if (p.name) part.partLabel = p.name;
    }
    return part;
  });
  return { table, sectorSize: t.sectorsize ?? 512, partitions };
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

function diskSize(dev: string): number {
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

/** Read the disk's partition table and probe every partition. */
export async function readDisk(run: RunFn, dev: string): Promise<DiskInfo> {
  const sizeBytes = diskSize(dev);
  const r = await run(["sfdisk", "--json", dev], { allowFail: true });
  if (r.exitCode !== 0 || r.stdout.trim() === "") {
    return { dev, sizeBytes, sectorSize: 512, table: "none", partitions: [] };
  }
  const t = parseSfdiskJson(r.stdout);
  for (const p of t.partitions) {
    if (p.kind === "extended") continue;
    const b = await probePartition(run, dev, p, t.sectorSize);
    if (b.TYPE) p.fsType = b.TYPE;
    if (b.UUID) p.uuid = b.UUID;
    if (b.LABEL) p.label = b.LABEL;
  }
  return { dev, sizeBytes, ...t };
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
  const parts = disk.partitions as PartitionEx[];
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

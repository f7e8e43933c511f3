/**
 * SWAP property: `<number>:<MiB>` → mkswap the partition FixPartitionTable
 * carved; `<letter>` (b…z) → mkswap that whole extra disk. Either way add
 * `UUID=… none swap sw 0 0` to the image's fstab. Under CLOUD_INIT (no
 * partition was carved) cloud-init is asked to make a swap file instead.
 */
import { diskSerial } from "../../src/protocol.ts";
import type { Task } from "../task.ts";
import { parseSwapPartition } from "../lib/partition.ts";
import { diskBySerial } from "../disk.ts";
import { makeSwap, swapDiskIndex } from "../lib/swap.ts";
import { requestSwapFile, requireCloudInit } from "../os/cloudinit.ts";
import { addSwapToFstab } from "../os/fstab.ts";

export const task: Task = {
  name: "AddSwap",
  mounted: true,
  excludable: true,
  families: ["linux"],
  async run(ctx) {
    const value = ctx.props.get("SWAP");
    if (value === undefined || value.trim() === "") {
      ctx.info("no SWAP property; nothing to do");
      return;
    }
    let dev: string;
    const part = parseSwapPartition(value);
    if (part) {
      const p = ctx.disk.partitions.find((x) => x.number === part.number);
      if (!p) {
        if (ctx.props.bool("CLOUD_INIT")) {
          requireCloudInit(ctx.root);
          ctx.info(`asked cloud-init for a ${part.mib} MiB swap file (${requestSwapFile(ctx.root, part.mib)})`);
          return;
        }
        throw new Error(`swap partition ${part.number} does not exist (is FixPartitionTable excluded?)`);
      }
      dev = p.dev;
    } else {
      const idx = swapDiskIndex(value)!;
      if (!ctx.params.disks.some((d) => d.index === idx)) throw new Error(`SWAP=${value.trim()}: the instance has no disk ${idx}`);
      const found = diskBySerial(diskSerial(idx));
      if (!found) throw new Error(`SWAP=${value.trim()}: cannot find disk ${idx} (serial ${diskSerial(idx)})`);
      dev = found;
    }
    const uuid = await makeSwap(ctx.run, dev);
    const added = addSwapToFstab(ctx.root, uuid);
    ctx.info(`swap on ${dev} (UUID=${uuid})${added ? " added to /etc/fstab" : ""}`);
  },
};

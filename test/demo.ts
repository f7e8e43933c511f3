/**
 * The main job on an embedded default: deploy a freshly built (cached)
 * Debian bookworm image onto a file-backed disk with a password, a hostname
 * and an injected file, exactly as Ganeti would call `create`, then show the
 * result from outside the helper.
 *
 *   bun run test/demo.ts            (after `bash test/run.sh setup`)
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runCreate, placeImage } from "./lib/deploy.ts";
import { debianImage } from "./lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "./lib/inspect.ts";

const work = process.env.SNF_DEMO_DIR ?? "/var/tmp/snf-image-demo";
const say = (s: string) => console.log(`\x1b[1m==> ${s}\x1b[0m`);

say("building (or reusing) a Debian bookworm diskdump image with debootstrap");
const img = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4", sizeMiB: 2048 });

rmSync(work, { recursive: true, force: true });
mkdirSync(join(work, "images"), { recursive: true });
placeImage(img.path, join(work, "images", "debian-bookworm.diskdump"));
const disk = join(work, "vm1-disk0.img");
Bun.spawnSync(["truncate", "-s", "4G", disk]);

const password = "demo-Passw0rd";
const motd = "Deployed by snf-image.\n";
say(`create: img_id=debian-bookworm img_format=diskdump onto ${disk} (4 GiB file disk)`);
const r = await runCreate({
  disks: [disk],
  instance: "vm1.example.org",
  imageDir: join(work, "images"),
  osp: {
    img_id: "debian-bookworm",
    img_format: "diskdump",
    img_passwd: password,
    img_personality: JSON.stringify([{ path: "/root/hello.txt", contents: Buffer.from(motd).toString("base64"), owner: "root", group: "root", mode: 0o600 }]),
  },
  nics: [{ mac: "aa:00:00:12:34:56", ip: "192.0.2.10", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1" } }],
});
// The host's own log lines (the full log also has the helper's console, HELPER:, and the
// progress JSON, [MONITOR]; SNF_DEMO_VERBOSE=1 shows everything).
const shown = process.env.SNF_DEMO_VERBOSE ? r.output.split("\n") : r.output.split("\n").filter((l) => !l.startsWith("HELPER:") && !l.startsWith("[MONITOR]"));
console.log(shown.join("\n").trimEnd());
if (r.code !== 0) {
  console.error(`create failed (exit ${r.code}): ${r.lastLine}`);
  process.exit(1);
}
say(`create finished in ${(r.ms / 1000).toFixed(1)} s; looking at the disk from outside`);
const m = mountDisk(disk, img.rootPartition);
try {
  const hash = shadowHash(m.read("/etc/shadow"), "root") ?? "";
  const st = m.stat("/root/hello.txt");
  const parts = m.partitions();
  console.log(`hostname         : ${m.read("/etc/hostname").trim()}`);
  console.log(`/etc/hosts       : ${m.read("/etc/hosts").split("\n").find((l) => l.startsWith("127.0.1.1")) ?? "(none)"}`);
  console.log(`root password    : ${hash.slice(0, 3)}… ${verifyCrypt(password, hash) ? "matches" : "DOES NOT MATCH"} the given password`);
  console.log(`/root/hello.txt  : mode ${st.mode.toString(8)} uid ${st.uid} → ${JSON.stringify(m.read("/root/hello.txt"))}`);
  console.log(`partition 1      : ${((parts[0]!.size * 512) / 2 ** 30).toFixed(2)} GiB of a 4 GiB disk`);
  const hostKeys = existsSync(join(m.root, "etc/ssh")) ? m.list("/etc/ssh").filter((f) => f.startsWith("ssh_host_")) : [];
  console.log(`ssh host keys    : ${hostKeys.join(" ") || "(none)"}`);
} finally {
  m.close();
}

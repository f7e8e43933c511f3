/**
 * The Linux customization on real debootstrapped images, without booting
 * (the booted proofs are in boot.test.ts):
 *  - which network renderer the helper's table picks for each Debian suite;
 *  - negative cases through `create` exactly as Ganeti runs it: a dirty ext4
 *    journal, a missing user in USERS, fstab by /dev path, personality paths
 *    through symlinks pointing outside. Each ends in one clear line (exit 1)
 *    or a safe result; the source image stays intact and nothing is left
 *    behind (no qemu, no loop device of ours, no temp file).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCreate, placeImage, type ScriptRun } from "../lib/deploy.ts";
import { debianImage, type DebianImage, type ImageRecipe } from "../lib/images.ts";
import { mountDisk, shadowHash, verifyCrypt } from "../lib/inspect.ts";
import { select } from "../../helper/net/renderers.ts";
import { ifupdownEnabled, networkdEnabled, networkManagerEnabled, hasNetplan } from "../../helper/net/probe.ts";

const PASSWORD = "Matr1x-pw";
const b64 = (s: string) => Buffer.from(s).toString("base64");
let work: string;
let imageDir: string;
let base: DebianImage;
let baseSum: string;

const sha = (f: string) => {
  const h = createHash("sha256");
  h.update(readFileSync(f));
  return h.digest("hex");
};
function sh(argv: string[], input?: string): string {
  const p = Bun.spawnSync(argv, { stdin: input === undefined ? "ignore" : new TextEncoder().encode(input), stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${p.stderr.toString().trim()}`);
  return p.stdout.toString();
}
const ourLoops = () => sh(["losetup", "-a"]).split("\n").filter((l) => l.includes(work)).join("\n");
const ourQemus = () => Bun.spawnSync(["pgrep", "-f", `qemu-system.*${work}`], { stdout: "pipe" }).stdout.toString().trim();
/** The host's temp dir for our create runs (TMPDIR / SNF_IMAGE_TMPDIR): other tests on the machine use /tmp. */
const hostTmp = () => join(work, "tmp");
const snfTemps = () => readdirSync(hostTmp()).sort();

/** Byte offset of partition n of a raw disk image. */
function partOffset(disk: string, n: number): number {
  const j = JSON.parse(sh(["sfdisk", "--json", disk])) as { partitiontable: { sectorsize?: number; partitions: { start: number }[] } };
  return j.partitiontable.partitions[n - 1]!.start * (j.partitiontable.sectorsize ?? 512);
}

/** A writable copy of `img` in IMAGE_DIR under `name`; `edit` gets the root fs as a loop device and/or its mount point. */
async function variant(name: string, edit: { dev?: (loop: string) => void; tree?: (root: string) => void }): Promise<string> {
  const dest = join(imageDir, name);
  sh(["cp", "--sparse=always", base.path, dest]);
  sh(["chmod", "644", dest]);
  const loop = sh(["losetup", "-f", "--show", "-o", String(partOffset(dest, base.rootPartition)), dest]).trim();
  try {
    if (edit.tree) {
      const mnt = mkdtempSync(join(work, "mnt-"));
      sh(["mount", loop, mnt]);
      try {
        edit.tree(mnt);
      } finally {
        sh(["umount", mnt]);
        rmSync(mnt, { recursive: true });
      }
    }
    edit.dev?.(loop);
  } finally {
    sh(["losetup", "-d", loop]);
  }
  return dest;
}

function freshDisk(name: string): string {
  const d = join(work, `${name}.disk`);
  rmSync(d, { force: true });
  sh(["truncate", "-s", "3G", d]);
  return d;
}

async function create(imgName: string, disk: string, extra: { props?: Record<string, string>; osp?: Record<string, string> } = {}): Promise<ScriptRun> {
  const r = await runCreate({
    disks: [disk],
    instance: "matrix.example.org",
    imageDir,
    extraEnv: { TMPDIR: hostTmp(), SNF_IMAGE_TMPDIR: hostTmp() },
    nics: [{ mac: "aa:00:00:5e:00:60", ip: "192.0.2.60", network: { subnet: "192.0.2.0/24", gateway: "192.0.2.1" } }],
    osp: {
      img_id: imgName,
      img_format: "diskdump",
      img_passwd: PASSWORD,
      inst_properties: JSON.stringify({ ...extra.props }),
      ...extra.osp,
    },
  });
  console.log(`${imgName}: exit ${r.code} in ${(r.ms / 1000).toFixed(1)} s; last line: ${r.lastLine}`);
  // nothing left behind, whatever the outcome; the password never in the log
  expect(ourQemus()).toBe("");
  expect(ourLoops()).toBe("");
  expect(snfTemps()).toEqual([]);
  expect(r.output).not.toContain(PASSWORD);
  return r;
}

beforeAll(async () => {
  work = mkdtempSync(join("/var/tmp", "snf-matrix-test-"));
  imageDir = join(work, "images");
  mkdirSync(imageDir);
  mkdirSync(hostTmp());
  base = await debianImage({ suite: "bookworm", label: "msdos", rootFs: "ext4" });
  baseSum = sha(base.path);
}, 1_800_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("which network renderer each Debian suite gets", () => {
  // the recipes boot.test.ts boots (cached, shared)
  const recipes: ImageRecipe[] = [
    { suite: "bullseye", label: "msdos", rootFs: "xfs", separateBoot: true, bootable: true, users: ["alice"] },
    { suite: "bookworm", label: "msdos", rootFs: "ext4", bootable: true, users: ["alice"] },
    { suite: "trixie", label: "gpt", rootFs: "btrfs", bootable: true, users: ["alice"] },
  ];
  test.each(recipes.map((r) => [r.suite, r] as const))(
    "%s: ifupdown (networking.service enabled; no netplan, networkd or NetworkManager)",
    async (_suite, recipe) => {
      const img = await debianImage(recipe);
      const m = mountDisk(img.path, img.rootPartition);
      try {
        const facts = { ifupdown: ifupdownEnabled(m.root), networkd: networkdEnabled(m.root), nm: networkManagerEnabled(m.root), netplan: hasNetplan(m.root) };
        const picked = select(m.root, { forceNetworkManager: false, cloudInit: false })?.name;
        console.log(`${recipe.suite}: renderer ${picked} ${JSON.stringify(facts)}`);
        expect(facts).toEqual({ ifupdown: true, networkd: false, nm: false, netplan: false });
        expect(picked).toBe("ifupdown");
      } finally {
        m.close();
      }
    },
    900_000,
  );
});

describe("negative cases through create", () => {
  test("USERS names a user the image lacks: one line naming the user, exit 1", async () => {
    placeImage(base.path, join(imageDir, "base"));
    const r = await create("base", freshDisk("ghost"), { props: { USERS: "root ghost" } });
    expect(r.code).not.toBe(0);
    expect(r.lastLine).toMatch(/user ghost does not exist/);
    expect(sha(base.path)).toBe(baseSum);
  }, 600_000);

  test("fstab by /dev path: root by /dev is ignored (safe success); another mount by /dev is a clear error", async () => {
    const rootDev = await variant("fstab-dev-root", {
      tree: (root) => {
        const fstab = readFileSync(join(root, "etc/fstab"), "utf8").replace(/^UUID=\S+\s+\/\s/m, "/dev/vda1 / ");
        writeFileSync(join(root, "etc/fstab"), fstab);
      },
    });
    const disk = freshDisk("fstab-root");
    const ok = await create(rootDev, disk);
    expect(ok.code).toBe(0);
    const m = mountDisk(disk, 1);
    try {
      expect(m.read("/etc/hostname").trim()).toBe("matrix.example.org");
      expect(verifyCrypt(PASSWORD, shadowHash(m.read("/etc/shadow"), "root")!)).toBe(true);
    } finally {
      m.close();
    }

    const srvDev = await variant("fstab-dev-srv", {
      tree: (root) => writeFileSync(join(root, "etc/fstab"), readFileSync(join(root, "etc/fstab"), "utf8") + "/dev/vdb1 /srv ext4 defaults 0 2\n"),
    });
    const bad = await create(srvDev, freshDisk("fstab-srv"));
    expect(bad.code).not.toBe(0);
    expect(bad.lastLine).toMatch(/fstab entry \/dev\/vdb1 for \/srv is not by UUID or LABEL/);
  }, 900_000);

  test("personality through symlinks pointing outside: lands inside the image; a final symlink is moved aside, its target untouched", async () => {
    const name = await variant("evil-links", {
      tree: (root) => {
        symlinkSync("../../../../../../../../tmp/snf-escape", join(root, "srv/out"));
        symlinkSync("/root/../../../../var/tmp", join(root, "srv/abs"));
        symlinkSync("/etc/shadow", join(root, "etc/motd.d-link"));
      },
    });
    const disk = freshDisk("evil");
    const r = await create(name, disk, {
      osp: {
        img_personality: JSON.stringify([
          { path: "/srv/out/relative.txt", contents: b64("rel\n"), mode: 0o644 },
          { path: "/srv/abs/absolute.txt", contents: b64("abs\n"), mode: 0o644 },
          { path: "/etc/motd.d-link", contents: b64("motd\n"), mode: 0o644 },
        ]),
      },
    });
    expect(r.code).toBe(0);
    const m = mountDisk(disk, 1);
    try {
      // the relative link resolves at the image's root: /tmp/snf-escape inside the image
      expect(m.read("/tmp/snf-escape/relative.txt")).toBe("rel\n");
      expect(m.read("/var/tmp/absolute.txt")).toBe("abs\n");
      expect(m.read("/etc/motd.d-link")).toBe("motd\n");
      expect(m.list("/etc").some((f) => f.startsWith("motd.d-link.bak."))).toBe(true);
      const shadow = m.read("/etc/shadow");
      expect(shadow).toMatch(/^root:\$6\$/m);
      expect(shadow).not.toContain("motd");
    } finally {
      m.close();
    }
    // on the host: nothing at the paths the links name
    expect(() => readFileSync("/tmp/snf-escape/relative.txt")).toThrow();
    expect(() => readFileSync("/var/tmp/absolute.txt")).toThrow();
    expect(sha(base.path)).toBe(baseSum);
  }, 600_000);
});

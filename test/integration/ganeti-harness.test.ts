/**
 * The single-node Ganeti harness, exercised with a throwaway OS provider:
 * add, reinstall, failing add (job error carries the script's last line),
 * remove, down, warm up again. Needs root; installs ganeti on first run.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { addArgs, clusterDown, clusterRunning, clusterUp, gnt, gntOk, installOs, instanceDiskDir, lastOsLog } from "../lib/ganeti.ts";

const OS = "snf-probe";
const INST = "probe1.snf.test";
const BAD = "probe2.snf.test";
let dir = "";
let uninstall: (() => Promise<void>) | undefined;
const origHost = hostname();

async function writeProbeOs(d: string) {
  await writeFile(join(d, "ganeti_api_version"), "20\n");
  await writeFile(join(d, "variants.list"), "default\n");
  await writeFile(join(d, "parameters.list"), "marker text written at the start of disk 0 (\"fail\" fails)\n");
  const create = `#!/bin/sh
echo "probe create: instance=$INSTANCE_NAME reinstall=\${INSTANCE_REINSTALL:-0}"
if [ "$OSP_MARKER" = fail ]; then
  echo "probe create: about to fail" >&2
  echo "probe create: deliberate failure, last line"
  exit 3
fi
printf 'SNF-PROBE %s %s\\n' "$INSTANCE_NAME" "$OSP_MARKER" | dd of="$DISK_0_PATH" conv=notrunc status=none
`;
  await writeFile(join(d, "create"), create);
  for (const s of ["export", "import", "rename", "verify"]) await writeFile(join(d, s), "#!/bin/sh\nexit 0\n");
  for (const s of ["create", "export", "import", "rename", "verify"]) await chmod(join(d, s), 0o755);
}

async function diskHead(inst: string): Promise<string> {
  const dd = instanceDiskDir(inst);
  const f = readdirSync(dd).find((n) => n.endsWith(".disk0"));
  if (!f) throw new Error(`no disk0 in ${dd}`);
  return (await readFile(join(dd, f), "latin1")).slice(0, 64).split("\n")[0]!;
}

beforeAll(async () => {
  const s = await clusterUp();
  console.error(`[ganeti] clusterUp (as found): ${s.toFixed(1)} s`);
  dir = mkdtempSync(join(tmpdir(), "snf-probe-os-"));
  await mkdir(dir, { recursive: true });
  await writeProbeOs(dir);
  uninstall = await installOs(dir, OS);
}, 600_000);

afterAll(async () => {
  await gnt(["instance", "remove", "-f", INST]);
  await gnt(["instance", "remove", "-f", BAD]);
  await uninstall?.();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

test("the provider is listed", async () => {
  expect(await gntOk(["os", "list", "--no-headers"])).toContain(`${OS}+default`);
}, 60_000);

test("add runs create, which writes the disk", async () => {
  await gntOk(addArgs({ os: `${OS}+default`, instance: INST, params: { marker: "first" } }));
  expect(await diskHead(INST)).toBe(`SNF-PROBE ${INST} first`);
  const l = await lastOsLog("add", INST);
  expect(l?.text).toContain(`instance=${INST} reinstall=0`);
}, 120_000);

test("reinstall runs create again with INSTANCE_REINSTALL=1", async () => {
  await gntOk(["instance", "reinstall", "-f", "-O", "marker=second", INST]);
  expect(await diskHead(INST)).toBe(`SNF-PROBE ${INST} second`);
  expect((await lastOsLog("add", INST))?.text).toContain("reinstall=1");
}, 120_000);

test("a failing create fails the job and the error shows the script's last line", async () => {
  const r = await gnt(addArgs({ os: `${OS}+default`, instance: BAD, params: { marker: "fail" } }));
  expect(r.code).not.toBe(0);
  const out = r.stderr + r.stdout;
  expect(out).toContain("OS create script failed");
  expect(out).toContain("probe create: deliberate failure, last line");
  expect((await lastOsLog("add", BAD))?.text).toContain("about to fail");
  // Ganeti keeps the failed instance in its config
  await gntOk(["instance", "remove", "-f", BAD]);
}, 120_000);

test("remove deletes the instance and its disk", async () => {
  await gntOk(["instance", "remove", "-f", INST]);
  expect(existsSync(instanceDiskDir(INST))).toBe(false);
  expect(await gntOk(["instance", "list", "--no-headers", "-o", "name"])).not.toContain(INST);
}, 120_000);

test("down stops everything and restores the hostname; up again (warm) works", async () => {
  await uninstall?.();
  uninstall = undefined;
  const d1 = await clusterDown();
  expect(await clusterRunning()).toBe(false);
  expect(hostname()).not.toBe("node1.snf.test");
  const up = await clusterUp();
  expect(await clusterRunning()).toBe(true);
  expect(hostname()).toBe("node1.snf.test");
  const d2 = await clusterDown();
  expect(await clusterRunning()).toBe(false);
  console.error(`[ganeti] down ${d1.toFixed(1)} s, warm up (packages installed, no cluster) ${up.toFixed(1)} s, down ${d2.toFixed(1)} s; hostname now ${hostname()} (was ${origHost})`);
}, 300_000);

/**
 * HELPER_ACCEL=auto proves KVM by booting the helper before trusting it. On
 * this kind of machine /dev/kvm is PVM, which hangs or kills stock kernels: a
 * forced KVM probe must come back quickly with "no", leaving nothing behind.
 */
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { HELPER_DIR } from "../lib/deploy.ts";
import { loadHelperImage } from "../../src/helper-image/load.ts";
import { chooseAccel, kvmBootsHelper, probeKey } from "../../src/vm/accel-probe.ts";
import { probeHost } from "../../src/vm/accel.ts";

const image = loadHelperImage(HELPER_DIR);
const qemuCount = () =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, "utf8").includes("snf-probe-");
      } catch {
        return false;
      }
    }).length;

test.skipIf(!existsSync("/dev/kvm"))("a KVM that cannot boot the helper is detected within the probe timeout, and nothing is left", async () => {
  const t0 = performance.now();
  const r = await kvmBootsHelper({ image, memoryMiB: 256, user: "nobody", timeoutSec: 20 });
  const secs = (performance.now() - t0) / 1000;
  console.log(`KVM probe on this host: ${r.ok ? "boots" : "fails"} (${r.reason}) after ${secs.toFixed(1)} s`);
  if (probeHost().pvm) expect(r.ok).toBe(false);
  expect(r.reason).toMatch(/KVM/);
  expect(secs).toBeLessThan(20 + 3 + 15); // soft + hard timeout + start-up: never hangs
  expect(qemuCount()).toBe(0);
}, 120_000);

test("auto on a PVM host picks TCG without a probe; the probe key names kernel, qemu and helper", async () => {
  const t0 = performance.now();
  const a = await chooseAccel("auto", { image, memoryMiB: 256, user: "nobody" });
  if (probeHost().pvm || !existsSync("/dev/kvm")) {
    expect(a.accel).toBe("tcg");
    expect(performance.now() - t0).toBeLessThan(2000);
  }
  const key = probeKey({ image, memoryMiB: 256, user: "nobody" });
  expect(key).toContain(image.manifest.built);
  expect(key.split("|")).toHaveLength(4);
});

/**
 * Choose the qemu accelerator. KVM only where it really works: /dev/kvm
 * usable, the CPU has VT-x/AMD-V (vmx|svm) and /dev/kvm is not PVM (a
 * paravirtualized KVM on which stock kernels crawl and die).
 */
import fs from "node:fs";
import { SnfError } from "../errors.ts";
import { log } from "../log.ts";

export interface AccelProbe {
  devKvmUsable: boolean;
  cpuHasVirt: boolean;
  pvm: boolean;
}

export function probeHost(): AccelProbe {
  let devKvmUsable = false;
  try {
    fs.accessSync("/dev/kvm", fs.constants.R_OK | fs.constants.W_OK);
    devKvmUsable = true;
  } catch {}
  let cpuinfo = "";
  try {
    cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
  } catch {}
  return {
    devKvmUsable,
    cpuHasVirt: /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo),
    pvm: fs.existsSync("/sys/module/kvm_pvm"),
  };
}

/** Pure decision, given what the host looks like. */
export function decideAccel(setting: "auto" | "kvm" | "tcg", p: AccelProbe): { accel: "kvm" | "tcg"; reason: string; warning?: string } {
  if (setting === "tcg") return { accel: "tcg", reason: "tcg requested" };
  const problem = p.pvm
    ? "/dev/kvm is PVM (kvm_pvm loaded), which cannot run a stock kernel"
    : !p.devKvmUsable
      ? "/dev/kvm is missing or not accessible"
      : !p.cpuHasVirt
        ? "the CPU has no vmx/svm flag"
        : null;
  if (setting === "kvm") {
    if (!p.devKvmUsable) throw new SnfError("accel kvm requested but /dev/kvm is missing or not accessible");
    return problem
      ? { accel: "kvm", reason: "kvm requested", warning: `kvm forced although ${problem}: the helper VM may hang or fail` }
      : { accel: "kvm", reason: "kvm requested" };
  }
  return problem ? { accel: "tcg", reason: `software emulation (tcg): ${problem}` } : { accel: "kvm", reason: "kvm available (vmx/svm)" };
}

export function detectAccel(setting: "auto" | "kvm" | "tcg"): { accel: "kvm" | "tcg"; reason: string } {
  const d = decideAccel(setting, probeHost());
  if (d.warning) log.warn(d.warning);
  return { accel: d.accel, reason: d.reason };
}

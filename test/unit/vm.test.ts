import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import { decideAccel, detectAccel } from "../../src/vm/accel.ts";
import { CONSOLE_MAX_BYTES, ConsoleReader, MonitorReader, RESULT_MAX_BYTES, ResultReader } from "../../src/vm/channels.ts";
import { type HelperVmOptions, QEMU_ENV, leashCommand, qemuCommandLine } from "../../src/vm/qemu.ts";
import { FWCFG_PARAMS, MONITOR_MAX_LINES, type MonitorEvent, TOOLS_DISK_SERIAL, decodeMonitor, decodeResult, oneLine } from "../../src/protocol.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function opts(over: Partial<HelperVmOptions> = {}): HelperVmOptions {
  return {
    image: {
      manifest: { protocol: 1, version: "t", kernel: "k", built: "b", files: { kernel: "vmlinux", initrd: "initrd.cpio", tools: "tools.img" } },
      kernel: "/h/vmlinux",
      initrd: "/h/initrd.cpio",
      tools: "/h/tools.img",
    },
    disks: [
      { path: "/dev/xenvg/disk0", serial: "snf-disk0" },
      { path: "/srv/ganeti/file,with,commas.img", serial: "snf-disk1", readOnly: true, cache: "writeback" },
    ],
    params: "{}",
    accel: "tcg",
    memoryMiB: 256,
    user: "nobody",
    softTimeoutSec: 10,
    hardTimeoutSec: 5,
    ...over,
  };
}
const ctx = { runDir: "/run/x", tscKhz: 2_500_000 };
const values = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

describe("qemuCommandLine", () => {
  test("isolation flags and machine", () => {
    const a = qemuCommandLine(opts(), ctx);
    expect(a[0]).toBe("qemu-system-x86_64");
    for (const f of ["-nodefaults", "-no-user-config", "-no-reboot"]) expect(a).toContain(f);
    expect(values(a, "-runas")).toEqual(["nobody"]);
    expect(values(a, "-sandbox")).toEqual(["on,obsolete=deny,spawn=deny,resourcecontrol=deny"]);
    expect(values(a, "-M")).toEqual(["microvm"]);
    expect(values(a, "-m")).toEqual(["256"]);
    expect(values(a, "-display")).toEqual(["none"]);
  });

  test("every drive is raw, instance disks then the read-only tools disk, with serials", () => {
    const a = qemuCommandLine(opts(), ctx);
    const drives = values(a, "-drive");
    expect(drives.length).toBe(3);
    for (const d of drives) expect(d).toContain("format=raw");
    expect(drives[0]).toContain("file.driver=host_device,file.filename=/dev/xenvg/disk0");
    expect(drives[0]).toContain("cache=none,aio=native");
    expect(drives[0]).not.toContain("readonly");
    // commas in paths are escaped; the tmpfs-style fallback uses writeback
    expect(drives[1]).toContain("file.driver=file,file.filename=/srv/ganeti/file,,with,,commas.img");
    expect(drives[1]).toContain("cache=writeback,aio=threads,readonly=on");
    expect(drives[2]).toContain("file.filename=/h/tools.img");
    expect(drives[2]).toContain("readonly=on");
    // instance disks have no device on the command line: they are hot-added as SCSI disks
    const devs = values(a, "-device").filter((d) => d.startsWith("virtio-blk-device"));
    expect(devs).toEqual([`virtio-blk-device,drive=tools,serial=${TOOLS_DISK_SERIAL}`]);
    expect(values(a, "-device")).toContain("virtio-scsi-device,id=scsi0");
    expect(a).not.toContain("-incoming");
  });

  test("with inherited descriptors the disks are fd sets (both modes, read-only disks one); a resume reads its state from a descriptor", () => {
    const snap = { state: "/h/snapshots/k.state", cmdline: "console=ttyS0 saved", bytes: 1 };
    const a = qemuCommandLine(opts({ resume: snap }), { ...ctx, fds: { state: 4, disks: [[5, 6], [7]] } });
    expect(values(a, "-add-fd")).toEqual(["fd=5,set=1,opaque=/dev/xenvg/disk0", "fd=6,set=1,opaque=/dev/xenvg/disk0", "fd=7,set=2,opaque=/srv/ganeti/file,,with,,commas.img"]);
    const drives = values(a, "-drive");
    expect(drives[0]).toContain("file.filename=/dev/fdset/1,");
    expect(drives[1]).toContain("file.filename=/dev/fdset/2,");
    expect(drives[0]).not.toContain("/dev/xenvg/disk0");
    expect(values(a, "-incoming")).toEqual(["fd:4"]);
    expect(a).toContain("-S");
    // the saved guest's own kernel command line, whatever this host's TSC reads now
    expect(values(a, "-append")).toEqual(["console=ttyS0 saved"]);
    const s = qemuCommandLine(opts(), { ...ctx, fds: { fdmon: 4, disks: [[5, 6], [7]] } });
    expect(values(s, "-chardev")).toContain("socket,id=fdmon,fd=4");
    expect(values(s, "-mon")).toEqual(["chardev=qmp,mode=control", "chardev=fdmon,mode=control"]);
  });

  test("serial channels and params by file", () => {
    const a = qemuCommandLine(opts(), ctx);
    expect(values(a, "-serial")).toEqual(["chardev:console"]);
    expect(values(a, "-chardev")).toEqual([
      "socket,id=console,path=/run/x/console.sock",
      "socket,id=result,path=/run/x/result.sock",
      "socket,id=monitor,path=/run/x/monitor.sock",
      "socket,id=qmp,path=/run/x/qmp.sock",
    ]);
    expect(values(a, "-device")).toContain("isa-serial,chardev=result,index=1");
    expect(values(a, "-device")).toContain("isa-serial,chardev=monitor,index=2");
    expect(values(a, "-fw_cfg")).toEqual([`name=${FWCFG_PARAMS},file=/proc/self/fd/3`]);
  });

  test("accelerator specific cpu and kernel arguments", () => {
    const t = qemuCommandLine(opts(), ctx);
    expect(values(t, "-accel")).toEqual(["tcg,tb-size=256"]);
    expect(values(t, "-cpu")).toEqual(["max"]);
    expect(values(t, "-append")[0]).toContain("tsc_early_khz=2500000");
    expect(values(t, "-append")[0]).toContain("quiet");
    const k = qemuCommandLine(opts({ accel: "kvm", debug: true }), ctx);
    expect(values(k, "-accel")).toEqual(["kvm"]);
    expect(values(k, "-cpu")).toEqual(["host"]);
    expect(values(k, "-append")[0]).not.toContain("tsc_early_khz");
    expect(values(k, "-append")[0]).not.toContain("quiet");
  });

  test("no password anywhere in argv", () => {
    const secret = "S3cret-pa55word";
    const a = qemuCommandLine(opts({ params: JSON.stringify({ password: secret }) }), ctx).join(" ");
    expect(a).not.toContain(secret);
    expect(a).not.toMatch(/password/i);
    expect(a).not.toContain("string=");
  });
});

describe("leash", () => {
  test("pdeathsig, a PID namespace killed with its parent, and a deadline", () => {
    expect(leashCommand(12.5)).toEqual([
      "setpriv", "--pdeathsig", "KILL", "--",
      "unshare", "--pid", "--fork", "--kill-child=KILL", "--",
      "timeout", "--signal=KILL", "13s",
    ]);
  });
  test("qemu's environment is fixed, nothing inherited", () => {
    expect(Object.keys(QEMU_ENV).sort()).toEqual(["LANG", "PATH"]);
  });
});

describe("accel", () => {
  test("decideAccel", () => {
    const good = { devKvmUsable: true, cpuHasVirt: true, pvm: false };
    expect(decideAccel("auto", good).accel).toBe("kvm");
    expect(decideAccel("tcg", good).accel).toBe("tcg");
    expect(decideAccel("auto", { ...good, cpuHasVirt: false })).toMatchObject({ accel: "tcg", reason: expect.stringContaining("vmx/svm") });
    expect(decideAccel("auto", { ...good, devKvmUsable: false }).accel).toBe("tcg");
    const pvm = decideAccel("auto", { ...good, pvm: true });
    expect(pvm.accel).toBe("tcg");
    expect(pvm.reason).toContain("PVM");
    const forced = decideAccel("kvm", { ...good, pvm: true });
    expect(forced.accel).toBe("kvm");
    expect(forced.warning).toContain("PVM");
    expect(() => decideAccel("kvm", { ...good, devKvmUsable: false })).toThrow("/dev/kvm");
  });

  test("detectAccel on this host", () => {
    const d = detectAccel("auto");
    if (fs.existsSync("/sys/module/kvm_pvm")) {
      expect(d.accel).toBe("tcg");
      expect(d.reason).toContain("PVM");
    } else {
      expect(["kvm", "tcg"]).toContain(d.accel);
    }
    expect(detectAccel("tcg").accel).toBe("tcg");
  });
});

describe("channel readers", () => {
  test("result: first line only, split chunks, CRLF", () => {
    const r = new ResultReader();
    r.push(enc("SUCC"));
    r.push(enc("ESS\r\nERROR: later line\n"));
    expect(r.result()).toEqual({ ok: true });
    const e = new ResultReader();
    e.push(enc("ERROR: disk full\r\n"));
    expect(e.result()).toEqual({ ok: false, error: "disk full" });
    expect(new ResultReader().result()).toBeNull();
    const junk = new ResultReader();
    junk.push(enc("SUCCESSFUL\n"));
    expect(junk.result()?.ok).toBe(false);
  });

  test("result: bounded", () => {
    const r = new ResultReader();
    for (let i = 0; i < 100; i++) r.push(new Uint8Array(RESULT_MAX_BYTES).fill(65));
    const res = r.result();
    expect(res?.ok).toBe(false);
    expect(Buffer.byteLength(res && !res.ok ? res.error : "")).toBeLessThanOrEqual(400);
  });

  test("monitor: parses events split across chunks", () => {
    const got: MonitorEvent[] = [];
    const m = new MonitorReader((e) => got.push(e));
    m.push(enc("TASK_START:Fix"));
    m.push(enc("Part\r\nINFO:hello\r\nTASK_END:FixPart:12"));
    m.end();
    expect(got).toEqual([
      { kind: "TASK_START", task: "FixPart" },
      { kind: "INFO", text: "hello" },
      { kind: "TASK_END", task: "FixPart", ms: 12 },
    ]);
    expect(m.error).toBeUndefined();
  });

  test("monitor: too many lines, long lines and junk end monitoring", () => {
    const many = new MonitorReader(() => {});
    many.push(enc("INFO:x\n".repeat(MONITOR_MAX_LINES + 5)));
    expect(many.error).toContain("more than");
    const long = new MonitorReader(() => {});
    long.push(enc("INFO:" + "a".repeat(100_000)));
    expect(long.error).toContain("longer");
    const got: MonitorEvent[] = [];
    const junk = new MonitorReader((e) => got.push(e));
    junk.push(enc("INFO:ok\nrm -rf /\nINFO:after\n"));
    expect(junk.error).toContain("bad monitor line");
    expect(got.length).toBe(1);
  });

  test("oneLine: every line break flattened; C0, DEL, C1 and bidi controls dropped (host and helper share it)", () => {
    expect(oneLine("a\nHELPER: SUCCESS\r\nb\rc\x0bd\x0ce\u0085f\u2028g\u2029h")).toBe("a | HELPER: SUCCESS | b | c | d | e | f | g | h");
    expect(oneLine("x\x1b[31m\x9b2J\x7f\x00y\u202eevil\u2066\u2069\u202a\u200f\u061cz\tend")).toBe("x[31m2Jyevilz end");
    expect(oneLine("\n\n  both ends \n")).toBe("both ends");
    expect(oneLine("plain | pipes stay")).toBe("plain | pipes stay");
    expect(oneLine("caf\u00e9 \u2714 \u00a0ok")).toBe("caf\u00e9 \u2714 \u00a0ok");
    // decoders apply it to whatever the guest sends
    expect(decodeMonitor("WARNING:fstab \u009b31m\u202eline\rforged")).toEqual({ kind: "WARNING", text: "fstab 31mline | forged" });
    expect(decodeResult("ERROR: bad \u202e\x1b[2Jthing\n")).toEqual({ ok: false, error: "bad [2Jthing" });
  });

  test("console: lines sanitized, long lines split, total bounded", () => {
    const lines: string[] = [];
    const c = new ConsoleReader((l) => lines.push(l));
    c.push(enc("hello\x1b[31m red\r\nsecond"));
    c.end();
    expect(lines).toEqual(["hello[31m red", "second"]);
    const all: string[] = [];
    const big = new ConsoleReader((l) => all.push(l));
    const chunk = enc(`${"x".repeat(1023)}\n`.repeat(1024));
    for (let i = 0; i < 10; i++) big.push(chunk);
    big.end();
    expect(all.length).toBeLessThanOrEqual(CONSOLE_MAX_BYTES / 1024 + 2);
    expect(all[all.length - 1]).toContain("truncated");
  });
});

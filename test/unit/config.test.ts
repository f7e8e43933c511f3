import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, parseConfig, parseConfigText } from "../../src/config.ts";
import { SnfError } from "../../src/errors.ts";

function bad(text: string): string {
  try {
    parseConfig(text, "/etc/snf-image/snf-image.conf");
  } catch (e) {
    expect(e).toBeInstanceOf(SnfError);
    return (e as Error).message;
  }
  throw new Error("expected a failure");
}

describe("config file", () => {
  test("defaults", () => {
    const c = parseConfig("", null);
    expect(c.IMAGE_DIR).toBe("/var/lib/snf-image");
    expect(c.HELPER_DIR).toBe("/var/lib/snf-image/helper");
    expect(c.HELPER_SOFT_TIMEOUT).toBe(120);
    expect(c.HELPER_HARD_TIMEOUT).toBe(5);
    expect(c.HELPER_USER).toBe("nobody");
    expect(c.HELPER_MEMORY).toBe(256);
    expect(c.HELPER_DEBUG).toBe(false);
    expect(c.HELPER_ACCEL).toBe("auto");
    expect(c.PROGRESS_MONITOR).toBe("");
    expect(c.DHCP_TAGS).toEqual(["auto", "dhcp", "nfdhcpd"]);
    expect(c.DEFAULT_NIC_CONFIG).toBe("dhcp");
  });

  test("quoting styles, comments, export, presets", () => {
    const c = parseConfig(
      [
        "# comment",
        "",
        'IMAGE_DIR="/srv/images"',
        "HELPER_DIR='/srv/helper dir'",
        "export HELPER_SOFT_TIMEOUT=2m",
        "HELPER_DEBUG=yes  # trailing comment",
        'PROGRESS_MONITOR="/usr/bin/mon --x"',
        'DHCP_TAGS="a b"',
        "IMG_FORMAT=diskdump",
        'HELPER_USER=snf\\-helper',
      ].join("\n"),
      "x.conf",
    );
    expect(c.IMAGE_DIR).toBe("/srv/images");
    expect(c.HELPER_DIR).toBe("/srv/helper dir");
    expect(c.HELPER_SOFT_TIMEOUT).toBe(120);
    expect(c.HELPER_DEBUG).toBe(true);
    expect(c.PROGRESS_MONITOR).toBe("/usr/bin/mon --x");
    expect(c.DHCP_TAGS).toEqual(["a", "b"]);
    expect(c.presets).toEqual({ img_format: "diskdump" });
    expect(c.HELPER_USER).toBe("snf-helper");
  });

  test("never runs the shell: expansions and commands are refused with the line number", () => {
    expect(bad('IMAGE_DIR=/x\nHELPER_DIR="$(rm -rf /)"')).toMatch(/snf-image.conf:2: bad quoting in the value of HELPER_DIR/);
    expect(bad("IMAGE_DIR=/x; touch /tmp/pwned")).toMatch(/:1: bad quoting/);
    expect(bad("IMAGE_DIR=/a b")).toMatch(/:1: bad quoting/);
    expect(bad("echo hi")).toMatch(/:1: not a KEY="value" line/);
    expect(bad('X="unterminated')).toMatch(/:1: bad quoting/);
  });

  test.each([
    ["HELPER_SOFT_TIMEOUT=soon", /snf-image.conf:1: HELPER_SOFT_TIMEOUT must be a number of seconds/],
    ["\nHELPER_MEMORY=12", /snf-image.conf:2: HELPER_MEMORY must be at least 128/],
    ["HELPER_ACCEL=xen", /HELPER_ACCEL must be auto, kvm or tcg/],
    ["IMAGE_DIR=relative", /IMAGE_DIR must be an absolute path/],
    ["HELPER_DEBUG=maybe", /HELPER_DEBUG must be yes or no/],
    ["DEFAULT_NIC_CONFIG=static", /DEFAULT_NIC_CONFIG must be one of/],
  ])("bad value %p", (text, re) => {
    expect(bad(text)).toMatch(re);
  });

  test("unknown and obsolete keys warn, do not fail", () => {
    const c = parseConfig("FOO=1\nVERSION_CHECK=yes", "c");
    expect(c.warnings).toHaveLength(2);
  });

  test("SNF_IMAGE_CONFIG selects the file; unreadable file is one line", () => {
    const d = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(d, "a.conf"), "HELPER_MEMORY=300\n");
    expect(loadConfig({ SNF_IMAGE_CONFIG: join(d, "a.conf") }).HELPER_MEMORY).toBe(300);
    expect(() => loadConfig({ SNF_IMAGE_CONFIG: join(d, "missing.conf") })).toThrow(/cannot read config file .*missing.conf: ENOENT/);
  });

  test("parseConfigText keeps the last assignment", () => {
    expect(parseConfigText("A=1\nA=2", "x").get("A")).toBe("2");
  });
});

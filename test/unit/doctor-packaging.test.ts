/** Debian packaging pieces that can be checked without building a .deb. */
import { describe, expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { ConfigSchema, parseConfig } from "../../src/config.ts";
import { glibcNeeded, parseControl } from "../../packaging/build-deb.ts";
import { renderConfigFile, SETTING_HELP } from "../../packaging/conffile.ts";

const DEB = path.resolve(import.meta.dir, "../../packaging/debian");

describe("shipped snf-image.conf", () => {
  const text = renderConfigFile();

  test("names every ConfigSchema setting, commented out, with a help text", () => {
    for (const key of Object.keys(ConfigSchema.entries)) {
      expect(text).toMatch(new RegExp(`^#${key}="`, "m"));
      expect(SETTING_HELP[key as keyof typeof SETTING_HELP]?.length).toBeGreaterThan(10);
    }
  });

  test("as shipped it parses to the defaults; uncommented it still does", () => {
    const defaults = parseConfig("", null);
    const shipped = parseConfig(text, "snf-image.conf");
    expect(shipped.warnings).toEqual([]);
    const uncommented = text.replace(/^#([A-Z_]+=)/gm, "$1");
    expect(uncommented).not.toBe(text);
    const active = parseConfig(uncommented, "snf-image.conf");
    expect(active.warnings).toEqual([]);
    for (const key of Object.keys(ConfigSchema.entries) as (keyof typeof defaults)[]) {
      expect(shipped[key]).toEqual(defaults[key]);
      expect(active[key]).toEqual(defaults[key]);
    }
  });
});

describe("packaging/debian", () => {
  test("control has the two binary packages with the tools the host runs", () => {
    const { source, packages } = parseControl(fs.readFileSync(path.join(DEB, "control"), "utf8"));
    expect(source.get("Source")).toBe("snf-image");
    expect(packages.map((p) => p.get("Package"))).toEqual(["snf-image-host", "snf-image-helper"]);
    const deps = packages[0]!.get("Depends")!;
    for (const d of ["qemu-system-x86", "linux-image-amd64", "busybox-static", "e2fsprogs", "fdisk", "mount", "ntfs-3g", "xfsprogs", "btrfs-progs", "whois", "syslinux-common", "xz-utils", "zstd", "kmod", "gpgv"]) {
      expect(deps.split(/,\s*/)).toContain(d);
    }
    expect(packages[0]!.get("Description")!.split("\n").length).toBeGreaterThan(3);
  });

  test("maintainer scripts are valid sh and purge removes what run time creates", () => {
    for (const f of ["snf-image-host/postinst", "snf-image-host/postrm", "snf-image-helper/postinst", "snf-image-host/snf-image-update-helper"]) {
      const p = Bun.spawnSync(["sh", "-n", path.join(DEB, f)], { stderr: "pipe" });
      expect(p.stderr.toString()).toBe("");
      expect(p.exitCode).toBe(0);
    }
    const postrm = fs.readFileSync(path.join(DEB, "snf-image-host/postrm"), "utf8");
    expect(postrm).toContain("rm -rf /var/lib/snf-image/helper");
    expect(postrm).toContain("/var/cache/snf-image");
    expect(fs.readFileSync(path.join(DEB, "snf-image-host/triggers"), "utf8")).toContain("/usr/lib/snf-image/snf-image-helper");
  });

  test("glibcNeeded reads the symbol versions of an ELF", () => {
    const v = glibcNeeded("/bin/sh");
    expect(v).toMatch(/^2\.\d+$/);
    expect(Number(v.split(".")[1])).toBeGreaterThan(2);
  });
});

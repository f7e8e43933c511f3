/** Shared-library closure of a host executable, as `ldd` reports it. */
import { exec, requireTool } from "../exec.ts";

/** Absolute library paths from ldd output, interpreter included (pure). */
export function parseLdd(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

/** [] for static binaries and scripts. */
export async function sharedLibs(file: string): Promise<string[]> {
  requireTool("ldd", "libc-bin");
  const r = await exec(["ldd", file], { allowFail: true });
  if (r.exitCode !== 0) return [];
  return parseLdd(r.stdout);
}

/** The benches' view of the process tree (read from /proc). */
import { readdirSync, readFileSync } from "node:fs";

/** `pids` and every process below them, with each one's command name. */
export function descendants(pids: number[]): { pid: number; comm: string }[] {
  const children = new Map<number, number[]>();
  const comm = new Map<number, string>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const st = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
      comm.set(Number(e), st.slice(st.indexOf("(") + 1, st.lastIndexOf(")")));
    } catch {}
  }
  const out: { pid: number; comm: string }[] = [];
  const todo = [...pids];
  while (todo.length) {
    const p = todo.pop()!;
    out.push({ pid: p, comm: comm.get(p) ?? "" });
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

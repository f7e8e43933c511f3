/** doctor: remove what dead runs left behind (temp directories, orphan helper VMs) and say so. */
import { describeSweep, sweepLeftovers } from "../leftovers.ts";
import { type CheckOutcome, ok, warn } from "./schema.ts";

export function checkLeftovers(): CheckOutcome {
  const r = sweepLeftovers();
  const line = describeSweep(r);
  if (!line) return ok("no leftovers of dead runs");
  return warn(`removed ${line}`, "nothing left to do; if this recurs, find what kills create (OOM killer, kill -9)", {
    details: [...r.pids.map((p) => `killed pid ${p}`), ...r.dirs.map((d) => `removed ${d}`)],
  });
}

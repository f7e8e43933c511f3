/**
 * Image properties as the helper sees them (keys upper-cased by the host,
 * precedence already applied). Booleans follow the original's rules.
 */
import type { Props } from "./task.ts";

const TRUE = new Set(["yes", "true", "on", "1", "set"]);
const FALSE = new Set(["no", "false", "off", "0"]);

export function makeProps(record: Record<string, string>, warn: (msg: string) => void = () => {}): Props {
  const map = new Map<string, string>();
  for (const [k, v] of Object.entries(record)) map.set(k.toUpperCase(), v);
  return {
    get: (name) => map.get(name.toUpperCase()),
    bool(name) {
      const raw = map.get(name.toUpperCase());
      if (raw === undefined) return false;
      const v = raw.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      if (v === "") {
        warn(`property ${name.toUpperCase()} is empty; treating it as false`);
        return false;
      }
      warn(`property ${name.toUpperCase()}=${JSON.stringify(raw.slice(0, 40))} is not a yes/no value; treating it as true`);
      return true;
    },
  };
}

/** Small IPv4/IPv6 literal helpers for the network model (no DNS, no ranges). */

export function isIPv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

export function isIPv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(":")) return false;
  const dbl = s.split("::");
  if (dbl.length > 2) return false;
  const groups = s.split(":").filter((g) => g !== "");
  const last = groups[groups.length - 1] ?? "";
  const v4tail = last.includes(".");
  if (v4tail && !isIPv4(last)) return false;
  const hex = v4tail ? groups.slice(0, -1) : groups;
  if (!hex.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  const count = hex.length + (v4tail ? 2 : 0);
  return dbl.length === 2 ? count < 8 : count === 8;
}

export interface Cidr {
  address: string;
  prefix: number;
}

/** Parse "a.b.c.d/nn" (family 4) or "x::/nn" (family 6); throws with `what` in the message. */
export function parseCidr(s: string, family: 4 | 6, what: string): Cidr {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(s.trim());
  const max = family === 4 ? 32 : 128;
  if (!m || !(family === 4 ? isIPv4(m[1]!) : isIPv6(m[1]!)) || Number(m[2]) > max) {
    throw new Error(`${what} ${JSON.stringify(s)} is not an IPv${family} network in CIDR form`);
  }
  return { address: m[1]!, prefix: Number(m[2]) };
}

const v4num = (s: string): number => s.split(".").reduce((a, p) => a * 256 + Number(p), 0);

export function inSubnet4(ip: string, net: Cidr): boolean {
  if (net.prefix === 0) return true;
  const mask = 2 ** 32 - 2 ** (32 - net.prefix);
  return (v4num(ip) & mask) >>> 0 === (v4num(net.address) & mask) >>> 0;
}

export function netmask4(prefix: number): string {
  const n = prefix === 0 ? 0 : 2 ** 32 - 2 ** (32 - prefix);
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

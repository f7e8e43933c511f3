/**
 * The USERS property: whose password and authorized keys the tasks set.
 * Space-separated names, duplicates dropped; default root, or Administrator
 * on Windows (windows, windows-legacy). *BSD images use root as Linux does.
 */
import type { OsFamily, Props } from "../task.ts";

export function defaultUser(family: OsFamily): string {
  return family === "windows" || family === "windows-legacy" ? "Administrator" : "root";
}

export function targetUsers(props: Props, family: OsFamily): string[] {
  const raw = props.get("USERS")?.trim();
  return [...new Set(raw ? raw.split(/\s+/) : [defaultUser(family)])];
}

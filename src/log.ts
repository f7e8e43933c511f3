/**
 * Host logging. Everything goes to stderr (for create/rename Ganeti appends
 * stdout and stderr to the OS log; for export stdout is the disk stream).
 */
import { createConsola, type ConsolaInstance } from "consola";

export const log: ConsolaInstance = createConsola({
  level: process.env.SNF_IMAGE_LOG_LEVEL === "debug" ? 4 : 3,
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false, colors: false, compact: true },
});

export function setDebug(on: boolean): void {
  log.level = on ? 4 : 3;
}

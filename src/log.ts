/**
 * Host logging. Everything goes to stderr (for create/rename Ganeti appends
 * stdout and stderr to the OS log; for export stdout is the disk stream).
 *
 * Every message is passed through oneLine (src/protocol.ts) on its way out:
 * log lines carry URLs, server answers, tool messages and helper text, all
 * of which an image or a server can shape, and none of it may become a line
 * of its own or carry a control or bidi character into the OS log.
 */
import { createConsola, type ConsolaInstance, type ConsolaReporter } from "consola";
import { oneLine } from "./protocol.ts";

export const log: ConsolaInstance = createConsola({
  level: process.env.SNF_IMAGE_LOG_LEVEL === "debug" ? 4 : 3,
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false, colors: false, compact: true },
});

const flatten = (a: unknown): unknown => (typeof a === "string" ? oneLine(a) : a instanceof Error ? oneLine(a.stack ?? a.message) : a);
log.setReporters(
  log.options.reporters.map(
    (r): ConsolaReporter => ({ log: (obj, ctx) => r.log({ ...obj, message: obj.message === undefined ? undefined : oneLine(String(obj.message)), args: obj.args.map(flatten) }, ctx) }),
  ),
);

export function setDebug(on: boolean): void {
  log.level = on ? 4 : 3;
}

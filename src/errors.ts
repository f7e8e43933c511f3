/**
 * A failure an operator can act on. Its message is one line that names the
 * cause; `create` prints it as the last line of the Ganeti OS log, where it
 * survives Ganeti's "last 20 lines".
 */
export class SnfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnfError";
  }
}

/**
 * A failure whose details were already printed (e.g. one line per invalid
 * parameter): its message is the summary line, printed without "ERROR: ".
 */
export class ReportedFailure extends SnfError {
  constructor(message: string) {
    super(message);
    this.name = "ReportedFailure";
  }
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The errno name of a failed system call ("ENOENT", "EACCES"…), else undefined. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && code ? code : undefined;
}

/** The cause a one-line error shows: the errno name when there is one, else the message. */
export function causeOf(e: unknown): string {
  return errnoOf(e) ?? errorMessage(e);
}

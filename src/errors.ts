/**
 * A failure an operator can act on. Its message is one line that names the
 * cause; `create` prints it as the last line of the Ganeti OS log, where it
 * survives Ganeti's "last 20 lines".
 */
export class SnfError extends Error {
  constructor(
    message: string,
    /** Message for end users (progress monitor); defaults to a generic one. */
    readonly userMessage?: string,
  ) {
    super(message);
    this.name = "SnfError";
  }
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * An error whose message is meant for the person running tickpipe: tasks print
 * it as one line (no stack trace) and exit with `exitCode`.
 */
export class UserError extends Error {
  override name = "UserError";
  /** The process exit code: 1 for a failure, 2 for a usage error. */
  readonly exitCode: number;

  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

/** A usage error (bad flag or argument): exit code 2. */
export class UsageError extends UserError {
  override name = "UsageError";

  constructor(message: string) {
    super(message, { exitCode: 2 });
  }
}

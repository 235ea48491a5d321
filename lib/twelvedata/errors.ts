import { UserError } from "../errors.ts";

/**
 * Twelve Data refused the API key (code 401). Fatal: a client that sees it stops
 * instead of reconnecting. The message never contains the key.
 */
export class AuthError extends UserError {
  override name = "AuthError";
  /** Twelve Data's error code (401). */
  readonly code: number;

  constructor(message: string, options: { code?: number; cause?: unknown } = {}) {
    super(message, { exitCode: 1, cause: options.cause });
    this.code = options.code ?? 401;
  }
}

/**
 * A Twelve Data REST call failed: an error body (`"status":"error"`, whatever the HTTP
 * status), an HTTP error, a body of the wrong shape or a network fault (`code` 0).
 */
export class TwelveDataError extends Error {
  override name = "TwelveDataError";
  /** Twelve Data's `code` (400, 403, 404, 429, 500...), the HTTP status, or 0 for a network fault. */
  readonly code: number;
  /** The HTTP status (0 when no response arrived). */
  readonly httpStatus: number;

  constructor(
    message: string,
    options: { code: number; httpStatus: number; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.code = options.code;
    this.httpStatus = options.httpStatus;
  }

  /** True for errors worth retrying later: rate limit, server error, network fault. */
  get retryable(): boolean {
    return this.code === 0 || this.code === 429 || this.code >= 500;
  }
}

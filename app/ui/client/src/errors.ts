/** An error answer of the API (`{"error": code, "message": text}`), or a network failure (status 0). */
export class PreviewApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds, from the `Retry-After` header of a 429 / 503. */
  readonly retryAfter?: number;

  constructor(status: number, code: string, message: string, retryAfter?: number) {
    super(message);
    this.name = "PreviewApiError";
    this.status = status;
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

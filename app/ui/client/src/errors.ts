/** An error answer of the API (`{"error": code, "message": text}`), or a network failure (status 0). */
import type { PreviewFallback } from "./types.js";

export class PreviewApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds, from the `Retry-After` header of a 429 / 503. */
  readonly retryAfter?: number;
  /** The session could not start: the answer says to show Appetize instead. */
  readonly fallback?: PreviewFallback;

  constructor(status: number, code: string, message: string, retryAfter?: number, fallback?: PreviewFallback) {
    super(message);
    this.name = "PreviewApiError";
    this.status = status;
    this.code = code;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
    if (fallback !== undefined) this.fallback = fallback;
  }
}

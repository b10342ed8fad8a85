/** An error answer of the API (`{"error": code, "message": text}`), or a network failure (status 0). */
export class PreviewApiError extends Error {
    status;
    code;
    /** Seconds, from the `Retry-After` header of a 429 / 503. */
    retryAfter;
    constructor(status, code, message, retryAfter) {
        super(message);
        this.name = "PreviewApiError";
        this.status = status;
        this.code = code;
        if (retryAfter !== undefined)
            this.retryAfter = retryAfter;
    }
}

export class PreviewApiError extends Error {
    status;
    code;
    /** Seconds, from the `Retry-After` header of a 429 / 503. */
    retryAfter;
    /** The session could not start: the answer says to show Appetize instead. */
    fallback;
    constructor(status, code, message, retryAfter, fallback) {
        super(message);
        this.name = "PreviewApiError";
        this.status = status;
        this.code = code;
        if (retryAfter !== undefined)
            this.retryAfter = retryAfter;
        if (fallback !== undefined)
            this.fallback = fallback;
    }
}

/** An error answer of the API (`{"error": code, "message": text}`), or a network failure (status 0). */
export declare class PreviewApiError extends Error {
    readonly status: number;
    readonly code: string;
    /** Seconds, from the `Retry-After` header of a 429 / 503. */
    readonly retryAfter?: number;
    constructor(status: number, code: string, message: string, retryAfter?: number);
}

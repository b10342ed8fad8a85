/** The HTTP client of the preview orchestrator's API. */
import { PreviewConnection } from "./connection.js";
import { PreviewApiError } from "./errors.js";
import { fallbackOf } from "./appetize.js";
export { PreviewApiError };
function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(signal.reason ?? new DOMException("Aborted", "AbortError"));
            return;
        }
        const timer = setTimeout(() => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
        }, ms);
        const onAbort = () => {
            clearTimeout(timer);
            reject(signal?.reason ?? new DOMException("Aborted", "AbortError"));
        };
        signal?.addEventListener("abort", onAbort, { once: true });
    });
}
function parseRetryAfter(value) {
    if (value === null)
        return undefined;
    const seconds = Number(value);
    if (Number.isFinite(seconds))
        return Math.max(0, seconds);
    const date = Date.parse(value);
    if (Number.isNaN(date))
        return undefined;
    return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
export class PreviewClient {
    baseUrl;
    getAccessToken;
    #fetch;
    /** The last access token obtained, for requests that cannot wait (keepalive on pagehide). */
    #lastAccessToken = null;
    constructor(options) {
        this.baseUrl = options.baseUrl.replace(/\/+$/, "");
        this.getAccessToken = options.getAccessToken;
        const f = options.fetch ?? globalThis.fetch;
        this.#fetch = (input, init) => f.call(globalThis, input, init);
    }
    /** The absolute URL of an API path. */
    url(path) {
        return this.baseUrl + path;
    }
    /** Synchronous when the token provider is: a request then goes out in the caller's task. */
    #authorization() {
        const bearer = (token) => {
            this.#lastAccessToken = token;
            return `Bearer ${token}`;
        };
        const token = this.getAccessToken();
        return typeof token === "string" ? bearer(token) : Promise.resolve(token).then(bearer);
    }
    /** Sends a request to the API; JSON in and out; throws {@link PreviewApiError}. */
    async request(method, path, options = {}) {
        const headers = { Accept: "application/json" };
        if (options.auth !== false) {
            if (options.keepalive && this.#lastAccessToken !== null) {
                // Do not wait for a (possibly asynchronous) token provider while the page unloads.
                headers.Authorization = `Bearer ${this.#lastAccessToken}`;
            }
            else {
                const authorization = this.#authorization();
                headers.Authorization = typeof authorization === "string" ? authorization : await authorization;
            }
        }
        const init = { method, headers };
        if (options.body !== undefined) {
            headers["Content-Type"] = "application/json";
            init.body = JSON.stringify(options.body);
        }
        if (options.keepalive)
            init.keepalive = true;
        if (options.signal)
            init.signal = options.signal;
        let response;
        try {
            response = await this.#fetch(this.url(path), init);
        }
        catch (err) {
            if (options.signal?.aborted)
                throw err;
            throw new PreviewApiError(0, "network_error", err instanceof Error ? err.message : String(err));
        }
        if (response.status === 204)
            return undefined;
        let payload = null;
        const text = await response.text();
        if (text) {
            try {
                payload = JSON.parse(text);
            }
            catch {
                payload = null;
            }
        }
        if (!response.ok) {
            const body = (payload ?? {});
            throw new PreviewApiError(response.status, typeof body.error === "string" ? body.error : `http_${response.status}`, typeof body.message === "string" ? body.message : response.statusText || `HTTP ${response.status}`, parseRetryAfter(response.headers.get("Retry-After")), fallbackOf(body.fallback));
        }
        return payload;
    }
    /** The device catalogue (no auth needed). */
    async devices() {
        const body = await this.request("GET", "/api/preview/devices", { auth: false });
        return body.devices;
    }
    /** Which preview system this editor uses for the project (`appetize` when it falls back). */
    backend(projectId, signal) {
        const query = new URLSearchParams({ projectId });
        return this.request("GET", `/api/preview/backend?${query}`, signal ? { signal } : {});
    }
    /** Opens an Appetize-arm session: the panel shows the project's Appetize embed. */
    createAppetizeSession(projectId, reason) {
        return this.request("POST", "/api/preview/appetize-sessions", { body: { projectId, reason } });
    }
    /** Reports one stage of an Appetize-arm session (stamped by the server when it arrives). */
    async reportAppetizeStage(sessionId, stage, detail, options = {}) {
        const body = detail ? { stage, detail } : { stage };
        await this.request("POST", `/api/preview/appetize-sessions/${encodeURIComponent(sessionId)}/events`, {
            body,
            ...(options.keepalive ? { keepalive: true } : {}),
        });
    }
    /** Leases a preview machine: status "active" (201) or "booting" (202). */
    createSession(options) {
        const body = { projectId: options.projectId };
        for (const key of ["device", "deviceType", "template", "region", "options"]) {
            if (options[key] !== undefined && options[key] !== null && options[key] !== "")
                body[key] = options[key];
        }
        if (options.restore === true)
            body.restore = true;
        return this.request("POST", "/api/preview/sessions", { body });
    }
    getSession(id, signal) {
        return this.request("GET", `/api/preview/sessions/${encodeURIComponent(id)}`, signal ? { signal } : {});
    }
    /**
     * Resolves with the session once it is "active" (polls every 250 ms while it is "booting").
     * Rejects with a PreviewApiError `session_ended` / `session_failed` if it ends instead.
     */
    async waitActive(session, options = {}) {
        const interval = options.intervalMs ?? 250;
        const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
        let current = session;
        for (;;) {
            if (current.status === "active")
                return current;
            if (current.status === "ended" || current.status === "failed") {
                throw new PreviewApiError(409, `session_${current.status}`, `the session is ${current.status}`);
            }
            if (Date.now() >= deadline)
                throw new PreviewApiError(0, "timeout", "the session did not become active in time");
            await sleep(interval, options.signal);
            try {
                current = await this.getSession(session.id, options.signal);
            }
            catch (err) {
                // A transient failure (network, 5xx) is retried at the next poll.
                if (!(err instanceof PreviewApiError) || (err.status !== 0 && err.status < 500))
                    throw err;
            }
        }
    }
    /** A new session token (`409 session_ended` once the session is over). */
    refreshToken(id) {
        return this.request("POST", `/api/preview/sessions/${encodeURIComponent(id)}/token`);
    }
    /** A short-lived (5 min) preview-only link, e.g. for a QR code or a new tab. */
    share(id) {
        return this.request("POST", `/api/preview/sessions/${encodeURIComponent(id)}/share`);
    }
    async heartbeat(id) {
        await this.request("POST", `/api/preview/sessions/${encodeURIComponent(id)}/heartbeat`);
    }
    /** Ends the session. With `keepalive` the request survives the page being unloaded. */
    async endSession(id, options = {}) {
        await this.request("DELETE", `/api/preview/sessions/${encodeURIComponent(id)}`, {
            keepalive: options.keepalive === true,
        });
    }
    /** Opens the session's editor socket. */
    connect(session, options = {}) {
        return new PreviewConnection(this, session, options);
    }
}

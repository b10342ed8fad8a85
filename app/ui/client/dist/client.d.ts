/** The HTTP client of the preview orchestrator's API. */
import { PreviewConnection, type ConnectionOptions } from "./connection.js";
import { PreviewApiError } from "./errors.js";
export { PreviewApiError };
import type { AppetizeSession, AppetizeStage, BackendAnswer, CreateSessionOptions, Device, Session, ShareLink, TokenGrant } from "./types.js";
export type AccessTokenProvider = () => string | Promise<string>;
export interface PreviewClientOptions {
    /** The service's base URL, e.g. `https://preview.example.com`. */
    baseUrl: string;
    /** Returns the current Supabase access token (called before every authenticated request). */
    getAccessToken: AccessTokenProvider;
    /** A `fetch` implementation (defaults to the global one). */
    fetch?: typeof fetch;
}
export interface RequestOptions {
    body?: unknown;
    auth?: boolean;
    keepalive?: boolean;
    signal?: AbortSignal;
}
export interface WaitActiveOptions {
    signal?: AbortSignal;
    /** Poll interval in ms (default 250). */
    intervalMs?: number;
    /** Give up after this many ms (default: never). */
    timeoutMs?: number;
}
export declare class PreviewClient {
    #private;
    readonly baseUrl: string;
    readonly getAccessToken: AccessTokenProvider;
    constructor(options: PreviewClientOptions);
    /** The absolute URL of an API path. */
    url(path: string): string;
    /** Sends a request to the API; JSON in and out; throws {@link PreviewApiError}. */
    request<T>(method: string, path: string, options?: RequestOptions): Promise<T>;
    /** The device catalogue (no auth needed). */
    devices(): Promise<Device[]>;
    /** Which preview system this editor uses for the project (`appetize` when it falls back). */
    backend(projectId: string, signal?: AbortSignal): Promise<BackendAnswer>;
    /** Opens an Appetize-arm session: the panel shows the project's Appetize embed. */
    createAppetizeSession(projectId: string, reason: string): Promise<AppetizeSession>;
    /** Reports one stage of an Appetize-arm session (stamped by the server when it arrives). */
    reportAppetizeStage(sessionId: string, stage: AppetizeStage, detail?: {
        latencyMs?: number;
        message?: string;
        event?: string;
    }, options?: {
        keepalive?: boolean;
    }): Promise<void>;
    /** Leases a preview machine: status "active" (201) or "booting" (202). */
    createSession(options: CreateSessionOptions): Promise<Session>;
    getSession(id: string, signal?: AbortSignal): Promise<Session>;
    /**
     * Resolves with the session once it is "active" (polls every 250 ms while it is "booting").
     * Rejects with a PreviewApiError `session_ended` / `session_failed` if it ends instead.
     */
    waitActive(session: Session, options?: WaitActiveOptions): Promise<Session>;
    /** A new session token (`409 session_ended` once the session is over). */
    refreshToken(id: string): Promise<TokenGrant>;
    /** A short-lived (5 min) preview-only link, e.g. for a QR code or a new tab. */
    share(id: string): Promise<ShareLink>;
    heartbeat(id: string): Promise<void>;
    /** Ends the session. With `keepalive` the request survives the page being unloaded. */
    endSession(id: string, options?: {
        keepalive?: boolean;
    }): Promise<void>;
    /** Opens the session's editor socket. */
    connect(session: Session, options?: ConnectionOptions): PreviewConnection;
}

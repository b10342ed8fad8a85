/** The HTTP client of the preview orchestrator's API. */

import { PreviewConnection, type ConnectionOptions } from "./connection.js";
import { PreviewApiError } from "./errors.js";
import { fallbackOf } from "./appetize.js";

export { PreviewApiError };
import type {
  AppetizeSession,
  AppetizeStage,
  BackendAnswer,
  CreateSessionOptions,
  Device,
  Session,
  ShareLink,
  TokenGrant,
} from "./types.js";

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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
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

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

export class PreviewClient {
  readonly baseUrl: string;
  readonly getAccessToken: AccessTokenProvider;
  readonly #fetch: typeof fetch;
  /** The last access token obtained, for requests that cannot wait (keepalive on pagehide). */
  #lastAccessToken: string | null = null;

  constructor(options: PreviewClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.getAccessToken = options.getAccessToken;
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f.call(globalThis, input, init);
  }

  /** The absolute URL of an API path. */
  url(path: string): string {
    return this.baseUrl + path;
  }

  /** Synchronous when the token provider is: a request then goes out in the caller's task. */
  #authorization(): string | Promise<string> {
    const bearer = (token: string): string => {
      this.#lastAccessToken = token;
      return `Bearer ${token}`;
    };
    const token = this.getAccessToken();
    return typeof token === "string" ? bearer(token) : Promise.resolve(token).then(bearer);
  }

  /** Sends a request to the API; JSON in and out; throws {@link PreviewApiError}. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (options.auth !== false) {
      if (options.keepalive && this.#lastAccessToken !== null) {
        // Do not wait for a (possibly asynchronous) token provider while the page unloads.
        headers.Authorization = `Bearer ${this.#lastAccessToken}`;
      } else {
        const authorization = this.#authorization();
        headers.Authorization = typeof authorization === "string" ? authorization : await authorization;
      }
    }
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    if (options.keepalive) init.keepalive = true;
    if (options.signal) init.signal = options.signal;
    let response: Response;
    try {
      response = await this.#fetch(this.url(path), init);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new PreviewApiError(0, "network_error", err instanceof Error ? err.message : String(err));
    }
    if (response.status === 204) return undefined as T;
    let payload: unknown = null;
    const text = await response.text();
    if (text) {
      try {
        payload = JSON.parse(text);
      } catch {
        payload = null;
      }
    }
    if (!response.ok) {
      const body = (payload ?? {}) as { error?: unknown; message?: unknown; fallback?: unknown };
      throw new PreviewApiError(
        response.status,
        typeof body.error === "string" ? body.error : `http_${response.status}`,
        typeof body.message === "string" ? body.message : response.statusText || `HTTP ${response.status}`,
        parseRetryAfter(response.headers.get("Retry-After")),
        fallbackOf(body.fallback),
      );
    }
    return payload as T;
  }

  /** The device catalogue (no auth needed). */
  async devices(): Promise<Device[]> {
    const body = await this.request<{ devices: Device[] }>("GET", "/api/preview/devices", { auth: false });
    return body.devices;
  }

  /** Which preview system this editor uses for the project (`appetize` when it falls back). */
  backend(projectId: string, signal?: AbortSignal): Promise<BackendAnswer> {
    const query = new URLSearchParams({ projectId });
    return this.request<BackendAnswer>("GET", `/api/preview/backend?${query}`, signal ? { signal } : {});
  }

  /** Opens an Appetize-arm session: the panel shows the project's Appetize embed. */
  createAppetizeSession(projectId: string, reason: string): Promise<AppetizeSession> {
    return this.request<AppetizeSession>("POST", "/api/preview/appetize-sessions", { body: { projectId, reason } });
  }

  /** Reports one stage of an Appetize-arm session (stamped by the server when it arrives). */
  async reportAppetizeStage(
    sessionId: string,
    stage: AppetizeStage,
    detail?: { latencyMs?: number; message?: string; event?: string },
    options: { keepalive?: boolean } = {},
  ): Promise<void> {
    const body = detail ? { stage, detail } : { stage };
    await this.request("POST", `/api/preview/appetize-sessions/${encodeURIComponent(sessionId)}/events`, {
      body,
      ...(options.keepalive ? { keepalive: true } : {}),
    });
  }

  /** Leases a preview machine: status "active" (201) or "booting" (202). */
  createSession(options: CreateSessionOptions): Promise<Session> {
    const body: Record<string, unknown> = { projectId: options.projectId };
    for (const key of ["device", "deviceType", "template", "region", "options"] as const) {
      if (options[key] !== undefined && options[key] !== null && options[key] !== "") body[key] = options[key];
    }
    if (options.restore === true) body.restore = true;
    return this.request<Session>("POST", "/api/preview/sessions", { body });
  }

  getSession(id: string, signal?: AbortSignal): Promise<Session> {
    return this.request<Session>("GET", `/api/preview/sessions/${encodeURIComponent(id)}`, signal ? { signal } : {});
  }

  /**
   * Resolves with the session once it is "active" (polls every 250 ms while it is "booting").
   * Rejects with a PreviewApiError `session_ended` / `session_failed` if it ends instead.
   */
  async waitActive(session: Session, options: WaitActiveOptions = {}): Promise<Session> {
    const interval = options.intervalMs ?? 250;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let current = session;
    for (;;) {
      if (current.status === "active") return current;
      if (current.status === "ended" || current.status === "failed") {
        throw new PreviewApiError(409, `session_${current.status}`, `the session is ${current.status}`);
      }
      if (Date.now() >= deadline) throw new PreviewApiError(0, "timeout", "the session did not become active in time");
      await sleep(interval, options.signal);
      try {
        current = await this.getSession(session.id, options.signal);
      } catch (err) {
        // A transient failure (network, 5xx) is retried at the next poll.
        if (!(err instanceof PreviewApiError) || (err.status !== 0 && err.status < 500)) throw err;
      }
    }
  }

  /** A new session token (`409 session_ended` once the session is over). */
  refreshToken(id: string): Promise<TokenGrant> {
    return this.request<TokenGrant>("POST", `/api/preview/sessions/${encodeURIComponent(id)}/token`);
  }

  /** A short-lived (5 min) preview-only link, e.g. for a QR code or a new tab. */
  share(id: string): Promise<ShareLink> {
    return this.request<ShareLink>("POST", `/api/preview/sessions/${encodeURIComponent(id)}/share`);
  }

  async heartbeat(id: string): Promise<void> {
    await this.request<void>("POST", `/api/preview/sessions/${encodeURIComponent(id)}/heartbeat`);
  }

  /** Ends the session. With `keepalive` the request survives the page being unloaded. */
  async endSession(id: string, options: { keepalive?: boolean } = {}): Promise<void> {
    await this.request<void>("DELETE", `/api/preview/sessions/${encodeURIComponent(id)}`, {
      keepalive: options.keepalive === true,
    });
  }

  /** Opens the session's editor socket. */
  connect(session: Session, options: ConnectionOptions = {}): PreviewConnection {
    return new PreviewConnection(this, session, options);
  }
}

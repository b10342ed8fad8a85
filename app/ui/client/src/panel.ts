/**
 * <preview-panel>: a framework-free Web Component that shows a live preview session in
 * device frames. Importing this module defines the element.
 */

import { AppetizeEmbed, type AppetizeStageDetail } from "./appetize.js";
import { PreviewClient, type AccessTokenProvider } from "./client.js";
import { PreviewApiError } from "./errors.js";
import type { PreviewConnection } from "./connection.js";
import { PANEL_MARKUP, PANEL_STYLE } from "./panel-style.js";
import type {
  AppetizeSettings,
  AppetizeStage,
  BuildErrorEvent,
  CloseEvent,
  ConnectionState,
  Device,
  EndedEvent,
  ErrorEvent,
  FileChangeInput,
  IdleWarningEvent,
  LogEvent,
  OpenEvent,
  PatchEvent,
  SeqEvent,
  Session,
  ShareLink,
  SnapshotEvent,
  TokenEvent,
  WelcomeEvent,
} from "./types.js";

export type PanelState = "initializing" | "booting" | "ready" | "updating" | "error" | "offline" | "ended";

export interface PanelStatusDetail {
  state: PanelState;
  /** The connection's state ("connecting", "booting", "ready", ...), null before it exists. */
  connectionState: ConnectionState | null;
  detail: string | null;
}

/** Detail types of the DOM events the panel dispatches (bubbling, composed). */
export interface PreviewPanelEventMap {
  "preview-status": CustomEvent<PanelStatusDetail>;
  "preview-session": CustomEvent<{ session: Session }>;
  "preview-load": CustomEvent<{ session: Session }>;
  "preview-welcome": CustomEvent<WelcomeEvent>;
  "preview-open": CustomEvent<OpenEvent>;
  "preview-close": CustomEvent<CloseEvent>;
  "preview-ack": CustomEvent<SeqEvent>;
  "preview-applied": CustomEvent<SeqEvent>;
  "preview-build-error": CustomEvent<BuildErrorEvent>;
  "preview-log": CustomEvent<LogEvent>;
  "preview-idle-warning": CustomEvent<IdleWarningEvent>;
  "preview-ended": CustomEvent<EndedEvent>;
  "preview-error": CustomEvent<ErrorEvent>;
  "preview-patch": CustomEvent<PatchEvent>;
  "preview-snapshot": CustomEvent<SnapshotEvent>;
  "preview-token": CustomEvent<TokenEvent>;
  "preview-device": CustomEvent<{ device: Device; landscape: boolean }>;
  /** The panel shows the Appetize embed instead (its arm session's id; null if unreported). */
  "preview-appetize": CustomEvent<{ reason: string; url: string; sessionId: string | null }>;
  /** A stage of the Appetize arm, as reported. */
  "preview-appetize-stage": CustomEvent<{ stage: AppetizeStage; detail: AppetizeStageDetail }>;
}

/** Used when the catalogue cannot be loaded. */
export const DEFAULT_DEVICES: Device[] = [
  { id: "iphone-15", name: "iPhone 15", platform: "ios", width: 393, height: 852, pixelRatio: 3, frame: "phone" },
  { id: "pixel-8", name: "Pixel 8", platform: "android", width: 412, height: 915, pixelRatio: 2.625, frame: "phone" },
  { id: "ipad-air", name: "iPad Air", platform: "ios", width: 820, height: 1180, pixelRatio: 2, frame: "tablet" },
  { id: "desktop", name: "Desktop", platform: "web", width: 1280, height: 800, pixelRatio: 1, frame: "desktop" },
];

const PLATFORM_LABELS: Record<string, string> = { ios: "iOS", android: "Android", web: "Web" };
const STATE_LABELS: Record<PanelState, string> = {
  initializing: "Initializing…",
  booting: "Booting…",
  ready: "Ready",
  updating: "Updating…",
  error: "Build error",
  offline: "Offline",
  ended: "Ended",
};
const END_REASONS: Record<string, string> = {
  deleted: "the session was closed",
  idle_timeout: "it was inactive for too long",
  max_duration: "it reached its maximum duration",
  boot_timeout: "the preview machine did not start in time",
  machine_lost: "the preview machine stopped",
  session_ended: "the session is over",
};
const MAX_LOG_LINES = 500;
const COOKIE_FRAME_TIMEOUT_MS = 10_000;
const UQR_PATH = "/ui/vendor/uqr/dist/index.mjs";
const STAGE_GAP = 16;
const CAPTION_SPACE = 26;

interface Bezel {
  x: number;
  top: number;
  bottom: number;
}
const BEZELS: Record<string, Bezel> = {
  phone: { x: 14, top: 14, bottom: 14 },
  tablet: { x: 20, top: 20, bottom: 20 },
  desktop: { x: 1, top: 35, bottom: 1 },
};

interface FrameView {
  device: Device;
  slot: HTMLDivElement;
  box: HTMLDivElement;
  screen: HTMLDivElement;
  url: HTMLSpanElement;
  caption: HTMLDivElement;
  iframe: HTMLIFrameElement;
  loaded: boolean;
}

type UqrModule = { renderSVG(text: string, options?: Record<string, unknown>): string };

// Lets the module load where HTMLElement does not exist (server-side rendering of the React wrapper).
const BaseElement: typeof HTMLElement =
  typeof HTMLElement !== "undefined" ? HTMLElement : (class {} as unknown as typeof HTMLElement);

/** The markup and style every panel shares, parsed once (at definition, before any mount). */
interface PanelParts {
  template: HTMLTemplateElement;
  /** The panel's style, or null where constructable style sheets are missing. */
  sheet: CSSStyleSheet | null;
  /** Hides the panel's content until its first render (see #render). */
  pending: CSSStyleSheet | null;
}
let parts: PanelParts | null = null;

function panelParts(): PanelParts {
  if (!parts) {
    const template = document.createElement("template");
    template.innerHTML = PANEL_MARKUP;
    let sheet: CSSStyleSheet | null = null;
    let pending: CSSStyleSheet | null = null;
    if ("adoptedStyleSheets" in Document.prototype && "replaceSync" in CSSStyleSheet.prototype) {
      sheet = new CSSStyleSheet();
      sheet.replaceSync(PANEL_STYLE);
      pending = new CSSStyleSheet();
      pending.replaceSync("* { display: none !important; }");
    }
    parts = { template, sheet, pending };
  }
  return parts;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

function errorDetail(err: unknown): ErrorEvent {
  if (err instanceof PreviewApiError) return { code: err.code, message: err.message };
  return { code: "error", message: err instanceof Error ? err.message : String(err) };
}

export class PreviewPanel extends BaseElement {
  static get observedAttributes(): string[] {
    return ["api", "project-id", "device", "template", "devices", "autostart", "fallback"];
  }

  #root!: ShadowRoot;
  #client: PreviewClient | null = null;
  #clientBase = "";
  #getAccessToken: AccessTokenProvider | null = null;
  #session: Session | null = null;
  #connection: PreviewConnection | null = null;
  #unsubscribe: Array<() => void> = [];
  #starting: Promise<Session | null> | null = null;
  #abort: AbortController | null = null;
  #queued: FileChangeInput[][] = [];

  #catalogue: Device[] = [];
  #cataloguePromise: Promise<Device[]> | null = null;
  #frames: FrameView[] = [];
  #landscape = false;
  #sideBySide: boolean | null = null;
  #resizeObserver: ResizeObserver | null = null;

  #state: PanelState = "initializing";
  #statusDetail: string | null = null;
  #startError: ErrorEvent | null = null;
  #buildError: BuildErrorEvent | null = null;
  #ended: EndedEvent | null = null;
  #sessionBooting = false;
  #sessionActive = false;
  #welcomed = false;
  #lostSocket = false;
  #reloadWhenApplied = false;
  #primaryLoaded = false;
  #autoFallback = false;
  #appetize: AppetizeEmbed | null = null;
  #appetizeOpening: Promise<void> | null = null;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #idleDeadline = 0;
  #startScheduled = false;
  #renderScheduled = false;
  #rendered = false;
  #userEnded = false;

  constructor() {
    super();
    if (typeof document === "undefined") return;
    this.#root = this.attachShadow({ mode: "open" });
    const { template, sheet, pending } = panelParts();
    if (sheet && pending) {
      this.#root.adoptedStyleSheets = [sheet, pending];
    } else {
      const style = document.createElement("style");
      style.textContent = PANEL_STYLE;
      this.#root.append(style);
    }
    this.#root.append(template.content.cloneNode(true));
    this.#bindControls();
  }

  // ---- public properties ----------------------------------------------------------------

  /** Returns the editor's current (Supabase) access token; the panel starts once it is set. */
  get getAccessToken(): AccessTokenProvider | null {
    return this.#getAccessToken;
  }
  set getAccessToken(value: AccessTokenProvider | null) {
    this.#getAccessToken = typeof value === "function" ? value : null;
    this.#client = null;
    this.#scheduleAutostart();
  }

  get api(): string {
    return this.getAttribute("api") || (typeof location !== "undefined" ? location.origin : "");
  }
  set api(value: string | null | undefined) {
    this.#setAttr("api", value);
  }
  get projectId(): string | null {
    return this.getAttribute("project-id");
  }
  set projectId(value: string | null | undefined) {
    this.#setAttr("project-id", value);
  }
  get device(): string | null {
    return this.getAttribute("device");
  }
  set device(value: string | null | undefined) {
    this.#setAttr("device", value);
  }
  get template(): string | null {
    return this.getAttribute("template");
  }
  set template(value: string | null | undefined) {
    this.#setAttr("template", value);
  }
  /** Start the session from the project's last files (the boolean `restore` attribute). */
  get restore(): boolean {
    return this.hasAttribute("restore");
  }
  set restore(value: boolean) {
    this.toggleAttribute("restore", Boolean(value));
  }
  /** Device ids shown side by side (the `devices` attribute, space-separated). */
  get devices(): string[] {
    return (this.getAttribute("devices") ?? "").split(/\s+/).filter(Boolean);
  }
  set devices(value: string[] | string | null | undefined) {
    const list = Array.isArray(value) ? value : typeof value === "string" ? value.split(/\s+/) : [];
    this.#setAttr("devices", list.filter(Boolean).join(" "));
  }
  get autostart(): boolean {
    const value = this.getAttribute("autostart");
    return value === null || !["false", "off", "0", "no"].includes(value.trim().toLowerCase());
  }
  set autostart(value: boolean | string | null | undefined) {
    const off = value === false || (typeof value === "string" && ["false", "off", "0", "no"].includes(value.trim().toLowerCase()));
    if (off) this.setAttribute("autostart", "false");
    else this.removeAttribute("autostart");
  }
  /** Fallback mode: the `fallback` slot is shown instead of the preview. */
  get fallback(): boolean {
    return this.hasAttribute("fallback");
  }
  set fallback(value: boolean | string | null | undefined) {
    this.#autoFallback = false;
    this.toggleAttribute("fallback", value === "" || (Boolean(value) && value !== "false"));
  }
  /** The Appetize embed's base URL (default: the server's, PREVIEW_APPETIZE_EMBED_URL). */
  get appetizeEmbedUrl(): string | null {
    return this.getAttribute("appetize-embed-url");
  }
  set appetizeEmbedUrl(value: string | null | undefined) {
    this.#setAttr("appetize-embed-url", value);
  }
  /** The Appetize embed shown instead of the new system's preview, or null. */
  get appetize(): { reason: string; url: string; sessionId: string | null; iframe: HTMLIFrameElement } | null {
    const a = this.#appetize;
    return a ? { reason: a.reason, url: a.url, sessionId: a.sessionId, iframe: a.iframe } : null;
  }
  /**
   * On Appetize, the editor rebuilt, uploaded and reloaded the app after an edit: `latencyMs` is
   * how long that took, as the editor measured it (the A/B report's edit-to-visible).
   */
  reportEditVisible(latencyMs: number): void {
    this.#appetize?.editVisible(latencyMs);
  }
  /** Several devices at once (the toggle, or the `devices` attribute). */
  get sideBySide(): boolean {
    return this.#sideBySide ?? this.devices.length > 1;
  }
  set sideBySide(value: boolean) {
    this.#sideBySide = Boolean(value);
    this.#syncFrames();
  }
  get landscape(): boolean {
    return this.#landscape;
  }
  set landscape(value: boolean) {
    this.#landscape = Boolean(value);
    this.#syncFrames();
  }
  get state(): PanelState {
    return this.#state;
  }
  get session(): Session | null {
    return this.#connection ? this.#connection.session : this.#session;
  }
  get connection(): PreviewConnection | null {
    return this.#connection;
  }
  get client(): PreviewClient | null {
    return this.#client;
  }
  /** The device catalogue (after it loaded). */
  get catalogue(): Device[] {
    return [...this.#catalogue];
  }
  /** The iframes showing the preview (the first one is the primary). */
  get iframes(): HTMLIFrameElement[] {
    return this.#frames.map((f) => f.iframe);
  }

  #setAttr(name: string, value: string | null | undefined): void {
    if (value === null || value === undefined || value === "") this.removeAttribute(name);
    else this.setAttribute(name, String(value));
  }

  // ---- lifecycle --------------------------------------------------------------------------

  connectedCallback(): void {
    if (!this.hasAttribute("state")) this.setAttribute("state", this.#state);
    // The session's POST heads the first render's critical path. Started here rather than from
    // a microtask when it can be: the POST then goes out before
    // the frames are built (their browsing contexts take milliseconds to create), and that work
    // overlaps the network's. Cheap while the content is hidden (see #render), it leaves the
    // session's answer only the iframes' src to set.
    if (this.#canAutostart()) void this.start().catch(() => undefined);
    else this.#scheduleAutostart();
    if (!this.#rendered) this.#syncFrames();
    this.#scheduleRender();
  }

  #scheduleRender(): void {
    if (this.#renderScheduled) return;
    this.#renderScheduled = true;
    // While the session's POST is in flight the first layout waits for its answer (at most
    // 150 ms): the answer then sets the iframe's src before that layout, instead of being
    // handled only once it is done.
    const delay = this.#rendered || !(this.#startScheduled || this.#starting) ? 0 : 150;
    setTimeout(() => {
      this.#renderScheduled = false;
      if (this.isConnected) this.#render();
    }, delay);
  }

  /** Builds the frames and starts observing the panel's size (idempotent). */
  #render(): void {
    // Until now the content was display: none, so that the browser's first frames after the
    // mount did not spend a style and layout pass on it while the session's POST was in flight.
    const { sheet } = panelParts();
    if (!this.#rendered && sheet) this.#root.adoptedStyleSheets = [sheet];
    this.#rendered = true;
    if (!this.#resizeObserver && typeof ResizeObserver !== "undefined") {
      this.#resizeObserver = new ResizeObserver(() => this.#layout());
      this.#resizeObserver.observe(this.#el(".frames"));
    }
    this.#syncFrames();
    this.#renderFallback();
    if (this.#catalogue.length === 0) this.#renderPicker();
    if (!this.#starting) void this.#loadCatalogue();
  }

  disconnectedCallback(): void {
    // A move within the document is a disconnect + connect in the same task: only end when gone.
    queueMicrotask(() => {
      if (this.isConnected) return;
      this.#resizeObserver?.disconnect();
      this.#resizeObserver = null;
      if (this.#connection || this.#starting || this.#appetize) void this.end({ keepalive: true }).catch(() => undefined);
    });
  }

  attributeChangedCallback(name: string, oldValue: string | null, value: string | null): void {
    if (oldValue === value) return;
    switch (name) {
      case "api":
        this.#client = null;
        this.#cataloguePromise = null;
        if (this.isConnected) void this.#loadCatalogue();
        break;
      case "device":
      case "devices":
        // Before the first render the frames do not exist yet: it builds them.
        if (this.#rendered) this.#syncFrames();
        break;
      case "fallback":
        if (this.#rendered) this.#renderFallback();
        break;
      case "project-id":
        if (this.#session && value && this.#session.projectId !== value) {
          void this.end().finally(() => {
            this.#userEnded = false;
            this.#scheduleAutostart();
          });
        } else {
          this.#scheduleAutostart();
        }
        break;
      case "autostart":
        this.#scheduleAutostart();
        break;
    }
  }

  /** Starts a session (once); resolves with it, or null if it could not start. */
  start(): Promise<Session | null> {
    if (this.#starting) return this.#starting;
    if (this.#connection && !this.#connection.closed) return Promise.resolve(this.session);
    const projectId = this.projectId;
    const getToken = this.#getAccessToken;
    if (!projectId || !getToken) {
      return Promise.reject(new Error("<preview-panel> needs a project-id attribute and a getAccessToken property"));
    }
    this.#userEnded = false;
    const run = this.#start(projectId).finally(() => {
      if (this.#starting === run) this.#starting = null;
    });
    this.#starting = run;
    return run;
  }

  /** Ends the session (DELETE) and shows the ended state. */
  async end(options: { keepalive?: boolean } = {}): Promise<void> {
    this.#userEnded = true;
    this.#abort?.abort();
    await this.#appetizeOpening;
    const appetize = this.#appetize;
    if (appetize) {
      this.#appetize = null;
      await appetize.end(options);
      appetize.remove();
      if (!this.#ended) this.#onEnded({ reason: "deleted", status: "ended" });
      this.#updateState();
    }
    const connection = this.#connection;
    if (connection && !connection.ended) {
      await connection.end(options).catch(() => undefined);
    } else if (connection) {
      connection.close();
    } else if (this.#session && this.#client && !this.#ended) {
      await this.#client.endSession(this.#session.id, options).catch(() => undefined);
      this.#onEnded({ reason: "deleted", status: "ended" });
    }
  }

  /** Sends a patch; returns its seq, or null while no session is connected (it is queued). */
  sendChanges(changes: FileChangeInput[]): number | null {
    this.#hideIdleBanner();
    const connection = this.#connection;
    if (!connection) {
      if (this.#ended) return null;
      this.#queued.push(changes.map((c) => ({ ...c })));
      return null;
    }
    if (connection.closed) return null;
    const seq = connection.send(changes);
    this.#updateState();
    return seq;
  }
  writeFile(path: string, content: string): number | null {
    return this.sendChanges([{ path, content }]);
  }
  deleteFile(path: string): number | null {
    return this.sendChanges([{ path, delete: true }]);
  }
  #reloadIfSettled(): void {
    if (!this.#reloadWhenApplied || !this.#connection || this.#connection.unappliedCount > 0) return;
    this.#reloadWhenApplied = false;
    this.reload();
  }

  /** Reloads every preview iframe (the app's state is lost; HMR keeps it otherwise). */
  reload(): void {
    if (!this.#sessionActive || !this.#session) return;
    for (const frame of this.#frames) {
      frame.loaded = false;
      frame.iframe.src = this.#frameUrl(frame === this.#frames[0] && !this.#primaryLoaded);
    }
  }
  /** Keep-alive now (what the idle banner's button does). */
  keepAlive(): void {
    this.#hideIdleBanner();
    this.#connection?.ping();
  }

  override addEventListener<K extends keyof PreviewPanelEventMap>(
    type: K,
    listener: (this: PreviewPanel, ev: PreviewPanelEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener<K extends keyof HTMLElementEventMap>(
    type: K,
    listener: (this: HTMLElement, ev: HTMLElementEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | ((ev: never) => unknown),
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject, options);
  }

  // ---- starting -----------------------------------------------------------------------

  #scheduleAutostart(): void {
    if (this.#startScheduled) return;
    this.#startScheduled = true;
    queueMicrotask(() => {
      this.#startScheduled = false;
      if (this.#canAutostart()) void this.start().catch(() => undefined);
    });
  }

  #canAutostart(): boolean {
    return Boolean(
      this.isConnected &&
        this.autostart &&
        !this.#userEnded &&
        !this.#ended &&
        !this.#startError &&
        this.projectId &&
        this.#getAccessToken &&
        !this.#starting &&
        !this.#connection,
    );
  }

  #ensureClient(): PreviewClient {
    const base = this.api;
    if (!this.#client || this.#clientBase !== base) {
      const getToken = this.#getAccessToken;
      this.#client = new PreviewClient({
        baseUrl: base,
        getAccessToken: () => {
          if (!getToken) throw new Error("no getAccessToken");
          return getToken();
        },
      });
      this.#clientBase = base;
    }
    return this.#client;
  }

  #loadCatalogue(): Promise<Device[]> {
    if (!this.#cataloguePromise) {
      const client = new PreviewClient({ baseUrl: this.api, getAccessToken: () => "" });
      this.#cataloguePromise = client
        .devices()
        .then((devices) => (Array.isArray(devices) && devices.length > 0 ? devices : DEFAULT_DEVICES))
        .catch(() => DEFAULT_DEVICES)
        .then((devices) => {
          this.#catalogue = devices;
          this.#renderPicker();
          this.#syncFrames();
          return devices;
        });
    }
    return this.#cataloguePromise;
  }

  async #start(projectId: string): Promise<Session | null> {
    this.#resetForStart();
    const abort = new AbortController();
    this.#abort = abort;
    const client = this.#ensureClient();
    // Which system this editor uses (flags, rollout, kill switch, a recent fallback). A project
    // with no Appetize build has nothing else to show: it stays on the new system.
    const decided = await client.backend(projectId, abort.signal).catch(() => null);
    if (abort.signal.aborted) return null;
    if (decided?.backend === "appetize" && decided.appetize) {
      await this.#showAppetize(projectId, decided.reason, decided.appetize);
      return null;
    }
    let session: Session;
    try {
      session = await this.#createSession(client, projectId, abort.signal);
    } catch (err) {
      void this.#loadCatalogue();
      if (!abort.signal.aborted) this.#failStart(err);
      return null;
    }
    if (abort.signal.aborted) {
      // end() was called while the session was being created.
      await client.endSession(session.id).catch(() => undefined);
      this.#onEnded({ reason: "deleted", status: "ended" });
      return null;
    }
    this.#session = session;
    this.#sessionBooting = session.status === "booting";
    if (!this.device && session.device) this.#setDeviceQuietly(session.device);
    if (!this.#sessionBooting) {
      // The first render is the critical path: the preview's HTML and modules go through the
      // same server as the editor socket, so the socket opens once the preview has loaded
      // (or after 2 s). Edits made meanwhile are queued and go out on connect.
      this.#sessionActive = true;
      if (this.#frames.length === 0) this.#syncFrames();
      this.#loadFrames();
      if (!this.#rendered) this.#render();
      await this.#primaryLoadedOrTimeout(2000, abort.signal);
      if (abort.signal.aborted) return null;
    }
    const connection = client.connect(session, {
      onTokenRefreshed: (grant) => this.#refreshPreviewCookie(grant.token),
    });
    void this.#loadCatalogue();
    this.#connection = connection;
    this.#wire(connection);
    for (const changes of this.#queued.splice(0)) connection.send(changes);
    this.#updateState();
    this.#emit("preview-session", { session });

    if (this.#sessionBooting) {
      try {
        session = await client.waitActive(session, { signal: abort.signal });
      } catch (err) {
        if (!abort.signal.aborted && !this.#ended) {
          const detail = errorDetail(err);
          if (detail.code === "session_ended" || detail.code === "session_failed") {
            connection.close();
            const failed = detail.code === "session_failed";
            this.#onEnded({ reason: failed ? "boot_timeout" : "ended", status: failed ? "failed" : "ended" });
            // A boot or wake that failed was recorded as a fallback: the backend now says so.
            if (failed) void this.#fallBackIfTold(client, projectId);
          } else {
            this.#failStart(err);
          }
        }
        return null;
      }
      this.#session = { ...session, token: connection.token, tokenExpiresAt: connection.tokenExpiresAt };
      this.#sessionBooting = false;
    }
    this.#sessionActive = true;
    this.#loadFrames();
    this.#updateState();
    return this.session;
  }

  #primaryLoadedOrTimeout(ms: number, signal: AbortSignal): Promise<void> {
    if (this.#primaryLoaded) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.removeEventListener("preview-load", done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.addEventListener("preview-load", done);
      signal.addEventListener("abort", done);
    });
  }

  async #createSession(client: PreviewClient, projectId: string, signal: AbortSignal): Promise<Session> {
    const options = {
      projectId,
      ...(this.device ? { device: this.device } : {}),
      ...(this.template ? { template: this.template } : {}),
      ...(this.restore ? { restore: true } : {}),
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await client.createSession(options);
      } catch (err) {
        const retryable =
          err instanceof PreviewApiError &&
          !err.fallback?.appetize &&
          (err.status === 503 || (err.status === 429 && err.code === "rate_limited") || err.status === 0);
        if (!retryable || attempt >= 4 || signal.aborted) throw err;
        const seconds = Math.min(15, err.retryAfter ?? attempt);
        this.#statusDetail = err.status === 503 ? "Waiting for a preview machine…" : "Retrying…";
        this.#setText(".starting-text", `${this.#statusDetail} (retry in ${Math.ceil(seconds)} s)`);
        await sleep(seconds * 1000, signal);
        if (signal.aborted) throw err;
      }
    }
  }

  #resetForStart(): void {
    this.#detach();
    this.#connection = null;
    this.#session = null;
    this.#startError = null;
    this.#buildError = null;
    this.#ended = null;
    this.#sessionBooting = false;
    this.#sessionActive = false;
    this.#welcomed = false;
    this.#primaryLoaded = false;
    this.#statusDetail = null;
    for (const frame of this.#frames) {
      frame.loaded = false;
      frame.iframe.removeAttribute("src");
    }
    if (this.#appetize) {
      void this.#appetize.end();
      this.#appetize.remove();
      this.#appetize = null;
    }
    this.removeAttribute("backend");
    if (this.#autoFallback) {
      this.#autoFallback = false;
      this.removeAttribute("fallback");
    }
    this.#setText(".starting-text", "Starting the preview…");
    this.#hideIdleBanner();
    this.#renderBuildError();
    this.#renderEnded();
    this.#updateState();
  }

  #failStart(err: unknown): void {
    const settings = err instanceof PreviewApiError ? err.fallback?.appetize : null;
    if (settings && this.projectId) {
      // The session could not start and the answer says to show Appetize: not an error to show.
      void this.#showAppetize(this.projectId, "fallback", settings);
      return;
    }
    const detail = errorDetail(err);
    this.#startError = detail;
    this.#statusDetail = detail.message;
    this.#emit("preview-error", detail);
    if (!this.fallback) {
      this.#autoFallback = true;
      this.toggleAttribute("fallback", true);
    }
    this.#renderFallback();
    this.#updateState();
  }

  async #fallBackIfTold(client: PreviewClient, projectId: string): Promise<void> {
    const decided = await client.backend(projectId).catch(() => null);
    if (decided?.backend === "appetize" && decided.appetize && this.projectId === projectId) {
      await this.#showAppetize(projectId, decided.reason, decided.appetize);
    }
  }

  /** Shows the project's Appetize embed in the fallback part and reports its arm's stages. */
  #showAppetize(projectId: string, reason: string, settings: AppetizeSettings): Promise<void> {
    if (this.#appetize || this.#appetizeOpening) return this.#appetizeOpening ?? Promise.resolve();
    if (!this.fallback) {
      this.#autoFallback = true;
      this.toggleAttribute("fallback", true);
    }
    this.setAttribute("backend", "appetize");
    const opening = AppetizeEmbed.open({
      container: this.#el(".fallback"),
      client: this.#ensureClient(),
      projectId,
      reason,
      settings,
      embedBase: this.appetizeEmbedUrl,
      onStage: (stage, detail) => this.#emit("preview-appetize-stage", { stage, detail }),
    }).then((embed) => {
      this.#appetize = embed;
      this.#renderFallback();
      this.#updateState();
      this.#emit("preview-appetize", { reason, url: embed.url, sessionId: embed.sessionId });
    });
    this.#appetizeOpening = opening.finally(() => {
      this.#appetizeOpening = null;
    });
    return this.#appetizeOpening;
  }

  #detach(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
  }

  #wire(c: PreviewConnection): void {
    const on = this.#unsubscribe;
    on.push(
      c.on("status", (e) => {
        this.#statusDetail = e.detail;
        if (e.state === "ready" && this.#buildError) {
          this.#buildError = null;
          this.#renderBuildError();
        }
        this.#updateState();
      }),
      c.on("welcome", (e) => {
        this.#welcomed = true;
        this.#emit("preview-welcome", e);
        this.#updateState();
        // Back after losing the socket: the preview's own HMR socket went through the same
        // server and is gone too. Vite would reload the page once its ping succeeds, but it
        // pings from a SharedWorker that, in a cross-site iframe, never gets through, so the
        // panel reloads its frames itself (the app restarts, with every edit applied) — once
        // the edits made while away are applied: a frame that is loading while one is
        // applied would miss its hot update.
        if (this.#lostSocket) {
          this.#lostSocket = false;
          this.#reloadWhenApplied = true;
          this.#reloadIfSettled();
        }
      }),
      c.on("open", (e) => this.#emit("preview-open", e)),
      c.on("close", (e) => {
        if (this.#welcomed) this.#lostSocket = true;
        this.#emit("preview-close", e);
        this.#updateState();
      }),
      c.on("ack", (e) => {
        this.#emit("preview-ack", e);
        this.#updateState();
      }),
      c.on("applied", (e) => {
        this.#emit("preview-applied", e);
        this.#updateState();
        this.#reloadIfSettled();
      }),
      c.on("buildError", (e) => {
        this.#buildError = e;
        this.#renderBuildError();
        const where = e.file ? ` (${e.file}${e.line ? `:${e.line}` : ""})` : "";
        this.#appendLog({ level: "error", message: `Build error${where}: ${e.message}`, source: "devserver" });
        this.#emit("preview-build-error", e);
        this.#updateState();
      }),
      c.on("log", (e) => {
        this.#appendLog(e);
        this.#emit("preview-log", e);
      }),
      c.on("idleWarning", (e) => {
        this.#showIdleBanner(e.secondsLeft);
        this.#emit("preview-idle-warning", e);
      }),
      c.on("ended", (e) => this.#onEnded(e)),
      c.on("error", (e) => {
        if (e.seq !== undefined) this.#appendLog({ level: "error", message: `${e.code}: ${e.message}`, source: null });
        this.#emit("preview-error", e);
        this.#updateState();
      }),
      c.on("patch", (e) => this.#emit("preview-patch", e)),
      c.on("snapshot", (e) => this.#emit("preview-snapshot", e)),
      c.on("token", (e) => this.#emit("preview-token", e)),
    );
  }

  #onEnded(e: EndedEvent): void {
    if (this.#ended) return;
    this.#ended = e;
    this.#abort?.abort();
    this.#hideIdleBanner();
    this.#renderEnded();
    this.#updateState();
    this.#emit("preview-ended", e);
    // The session never started (its boot or wake failed): the socket said to show Appetize.
    if (e.fallback?.appetize && this.projectId) void this.#showAppetize(this.projectId, "fallback", e.fallback.appetize);
  }

  // ---- iframes ------------------------------------------------------------------------

  #frameUrl(first: boolean): string {
    const session = this.session;
    if (!session) return "about:blank";
    return first ? session.previewUrl : `${session.previewOrigin}/`;
  }

  #loadFrames(): void {
    const [primary, ...others] = this.#frames;
    if (!primary || !this.#sessionActive) return;
    if (!this.#primaryLoaded) {
      if (!primary.iframe.getAttribute("src")) primary.iframe.src = this.#frameUrl(true);
      return;
    }
    for (const frame of others) {
      if (!frame.iframe.getAttribute("src")) frame.iframe.src = this.#frameUrl(false);
    }
  }

  #onFrameLoad(frame: FrameView): void {
    if (!frame.iframe.getAttribute("src") || !this.#sessionActive) return;
    frame.loaded = true;
    if (frame === this.#frames[0] && !this.#primaryLoaded) {
      this.#primaryLoaded = true;
      const session = this.session;
      if (session) this.#emit("preview-load", { session });
      this.#loadFrames();
    }
  }

  /** Refreshes the preview origin's cookie without reloading the preview. */
  #refreshPreviewCookie(token: string): void {
    const session = this.#session;
    if (!session || typeof document === "undefined") return;
    const frame = document.createElement("iframe");
    frame.setAttribute("aria-hidden", "true");
    frame.setAttribute("tabindex", "-1");
    frame.title = "Preview session refresh";
    frame.width = "0";
    frame.height = "0";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      frame.remove();
    };
    frame.addEventListener("load", done, { once: true });
    timer = setTimeout(done, COOKIE_FRAME_TIMEOUT_MS);
    frame.src = `${session.previewOrigin}/__preview/token?token=${encodeURIComponent(token)}`;
    this.#el(".cookie-frames").append(frame);
  }

  // ---- devices and layout ---------------------------------------------------------------

  #deviceById(id: string | null | undefined): Device | undefined {
    if (!id) return undefined;
    return this.#catalogue.find((d) => d.id === id) ?? DEFAULT_DEVICES.find((d) => d.id === id);
  }

  #primaryDevice(): Device {
    const list = this.#catalogue.length > 0 ? this.#catalogue : DEFAULT_DEVICES;
    return (
      this.#deviceById(this.device) ??
      this.#deviceById(this.devices[0]) ??
      this.#deviceById(this.#session?.device) ??
      list.find((d) => d.frame === "phone") ??
      list[0]!
    );
  }

  #desiredDevices(): Device[] {
    const primary = this.#primaryDevice();
    if (!this.sideBySide) return [primary];
    const list = this.#catalogue.length > 0 ? this.#catalogue : DEFAULT_DEVICES;
    const out = [primary];
    const ids = this.devices;
    if (ids.length > 0) {
      for (const id of ids) {
        const d = this.#deviceById(id);
        if (d && !out.includes(d)) out.push(d);
      }
    } else {
      for (const kind of ["phone", "tablet", "desktop"] as const) {
        const d = list.find((x) => x.frame === kind && !out.includes(x) && !out.some((o) => o.frame === kind));
        if (d) out.push(d);
      }
    }
    return out.slice(0, 4);
  }

  #setDeviceQuietly(id: string): void {
    if (this.#deviceById(id) || this.#catalogue.length === 0) this.setAttribute("device", id);
  }

  #createFrame(device: Device): FrameView {
    const slot = document.createElement("div");
    slot.className = "slot";
    const box = document.createElement("div");
    box.className = "device";
    box.setAttribute("part", "device");
    const notch = document.createElement("div");
    notch.className = "notch";
    const bar = document.createElement("div");
    bar.className = "browserbar";
    bar.setAttribute("aria-hidden", "true");
    bar.append(document.createElement("i"), document.createElement("i"), document.createElement("i"));
    const url = document.createElement("span");
    bar.append(url);
    const screen = document.createElement("div");
    screen.className = "screen";
    const iframe = document.createElement("iframe");
    iframe.setAttribute("allow", "clipboard-read; clipboard-write; fullscreen");
    iframe.setAttribute("referrerpolicy", "no-referrer");
    screen.append(iframe);
    box.append(notch, bar, screen);
    const caption = document.createElement("div");
    caption.className = "caption";
    slot.append(box, caption);
    const frame: FrameView = { device, slot, box, screen, url, caption, iframe, loaded: false };
    iframe.addEventListener("load", () => this.#onFrameLoad(frame));
    return frame;
  }

  /** Makes the frames match the wanted devices without reloading the iframes that stay. */
  #syncFrames(): void {
    if (!this.#root) return;
    const container = this.#el(".frames");
    const wanted = this.#desiredDevices();
    wanted.forEach((device, i) => {
      let frame = this.#frames[i];
      if (!frame) {
        frame = this.#createFrame(device);
        this.#frames.push(frame);
        container.append(frame.slot);
      }
      frame.device = device;
    });
    for (const extra of this.#frames.splice(wanted.length)) extra.slot.remove();
    // Navigation first: it does not wait for the layout that sizing the frames forces.
    this.#loadFrames();
    this.#renderFrames();
    this.#renderControls();
  }

  #orientation(device: Device): "portrait" | "landscape" {
    return this.#landscape && device.frame !== "desktop" ? "landscape" : "portrait";
  }

  #renderFrames(): void {
    const session = this.#session;
    const multi = this.#frames.length > 1;
    for (const frame of this.#frames) {
      const d = frame.device;
      const orientation = this.#orientation(d);
      frame.box.dataset.frame = d.frame;
      frame.box.dataset.orientation = orientation;
      frame.slot.dataset.device = d.id;
      frame.iframe.title = `App preview on ${d.name} (${orientation})`;
      frame.caption.textContent = `${d.name} · ${orientation === "landscape" ? d.height : d.width}×${orientation === "landscape" ? d.width : d.height}`;
      frame.caption.hidden = !multi;
      frame.url.textContent = session ? session.previewOrigin.replace(/^https?:\/\//, "") : "preview";
    }
    this.#layout();
  }

  #layout(): void {
    if (!this.#root || this.#frames.length === 0) return;
    const container = this.#el(".frames");
    const width = container.clientWidth;
    const height = container.clientHeight;
    const n = this.#frames.length;
    const availW = Math.max(40, (width - STAGE_GAP * (n - 1)) / n);
    const availH = Math.max(40, height - (n > 1 ? CAPTION_SPACE : 0));
    for (const frame of this.#frames) {
      const d = frame.device;
      const landscape = this.#orientation(d) === "landscape";
      const w = landscape ? d.height : d.width;
      const h = landscape ? d.width : d.height;
      const bezel = BEZELS[d.frame] ?? BEZELS.phone!;
      const outerW = w + 2 * bezel.x;
      const outerH = h + bezel.top + bezel.bottom;
      const scale = width > 0 && height > 0 ? Math.min(1, availW / outerW, availH / outerH) : 1;
      frame.screen.style.width = `${w}px`;
      frame.screen.style.height = `${h}px`;
      frame.box.style.width = `${outerW}px`;
      frame.box.style.height = `${outerH}px`;
      frame.box.style.transform = `scale(${scale})`;
      frame.slot.style.width = `${Math.floor(outerW * scale)}px`;
      frame.slot.style.height = `${Math.floor(outerH * scale)}px`;
      frame.slot.dataset.scale = scale.toFixed(3);
    }
  }

  // ---- controls -------------------------------------------------------------------------

  #el<T extends HTMLElement = HTMLElement>(selector: string): T {
    const el = this.#root.querySelector<T>(selector);
    if (!el) throw new Error(`preview-panel: missing ${selector}`);
    return el;
  }

  #setText(selector: string, text: string): void {
    if (this.#root) this.#el(selector).textContent = text;
  }

  #bindControls(): void {
    const select = this.#el<HTMLSelectElement>(".device-select");
    select.addEventListener("change", () => {
      this.device = select.value;
      const device = this.#primaryDevice();
      this.#emit("preview-device", { device, landscape: this.#landscape });
    });
    this.#el(".rotate").addEventListener("click", () => {
      this.landscape = !this.#landscape;
      this.#emit("preview-device", { device: this.#primaryDevice(), landscape: this.#landscape });
    });
    this.#el(".side").addEventListener("click", () => {
      this.sideBySide = !this.sideBySide;
    });
    this.#el(".reload").addEventListener("click", () => this.reload());
    this.#el(".open-tab").addEventListener("click", () => void this.#openInNewTab());
    this.#el(".qr").addEventListener("click", () => void this.#showQr());
    this.#el(".qr-close").addEventListener("click", () => this.#el<HTMLDialogElement>(".qr-dialog").close());
    const consoleToggle = this.#el(".console-toggle");
    consoleToggle.addEventListener("click", () => {
      const drawer = this.#el(".console");
      drawer.hidden = !drawer.hidden;
      consoleToggle.setAttribute("aria-expanded", String(!drawer.hidden));
      this.#layout();
    });
    this.#el(".console-clear").addEventListener("click", () => this.#el(".log").replaceChildren());
    this.#el(".be-dismiss").addEventListener("click", () => {
      this.#el(".build-error").hidden = true;
    });
    this.#el(".restart").addEventListener("click", () => {
      this.#ended = null;
      void this.start().catch((err: unknown) => this.#failStart(err));
    });
    this.#el(".keep").addEventListener("click", () => this.keepAlive());
  }

  #renderPicker(): void {
    if (!this.#root) return;
    const select = this.#el<HTMLSelectElement>(".device-select");
    const groups = new Map<string, Device[]>();
    for (const d of this.#catalogue.length > 0 ? this.#catalogue : DEFAULT_DEVICES) {
      const list = groups.get(d.platform) ?? [];
      list.push(d);
      groups.set(d.platform, list);
    }
    const children: HTMLOptGroupElement[] = [];
    for (const [platform, devices] of groups) {
      const group = document.createElement("optgroup");
      group.label = PLATFORM_LABELS[platform] ?? platform;
      for (const d of devices) {
        const option = document.createElement("option");
        option.value = d.id;
        option.textContent = `${d.name} (${d.width}×${d.height})`;
        group.append(option);
      }
      children.push(group);
    }
    select.replaceChildren(...children);
    this.#renderControls();
  }

  #renderControls(): void {
    if (!this.#root) return;
    const primary = this.#primaryDevice();
    const select = this.#el<HTMLSelectElement>(".device-select");
    if (select.value !== primary.id) select.value = primary.id;
    const rotate = this.#el<HTMLButtonElement>(".rotate");
    rotate.setAttribute("aria-pressed", String(this.#landscape));
    rotate.disabled = this.#frames.every((f) => f.device.frame === "desktop");
    this.#el(".side").setAttribute("aria-pressed", String(this.sideBySide));
    const live = this.#sessionActive && !this.#ended;
    this.#el<HTMLButtonElement>(".reload").disabled = !live;
    this.#el<HTMLButtonElement>(".open-tab").disabled = !live;
    this.#el<HTMLButtonElement>(".qr").disabled = !live;
  }

  async #share(): Promise<ShareLink | null> {
    const session = this.#session;
    if (!session || !this.#client) return null;
    try {
      return await this.#client.share(session.id);
    } catch (err) {
      const detail = errorDetail(err);
      this.#appendLog({ level: "error", message: `Share link: ${detail.message}`, source: null });
      this.#emit("preview-error", detail);
      return null;
    }
  }

  async #openInNewTab(): Promise<void> {
    const link = await this.#share();
    if (link) window.open(link.url, "_blank", "noopener");
  }

  async #showQr(): Promise<void> {
    const link = await this.#share();
    if (!link) return;
    const dialog = this.#el<HTMLDialogElement>(".qr-dialog");
    const code = this.#el(".qr-code");
    const anchor = this.#el<HTMLAnchorElement>(".qr-link");
    // An expo session's code opens Expo Go (native, with Fast Refresh); the link below stays
    // the web preview, for a phone without Expo Go.
    const scanned = link.expoGoUrl ?? link.url;
    this.#el(".qr-hint").hidden = !link.expoGoUrl;
    anchor.href = link.url;
    anchor.textContent = link.url;
    // The live session in Expo Go on an Appetize device, where the operator set that up: what
    // replaces a stale Appetize upload for an expo project (docs/templates.md).
    const appetize = this.#el<HTMLAnchorElement>(".qr-appetize");
    appetize.hidden = !link.appetizeUrl;
    if (link.appetizeUrl) appetize.href = link.appetizeUrl;
    else appetize.removeAttribute("href");
    const expires = new Date(link.expiresAt);
    const minutes = Math.max(0, Math.round((expires.getTime() - Date.now()) / 60_000));
    this.#setText(
      ".qr-expiry",
      Number.isNaN(expires.getTime())
        ? "This link expires soon."
        : `This link expires at ${expires.toLocaleTimeString()} (in about ${minutes} min).`,
    );
    try {
      const url = new URL(UQR_PATH, this.api).href;
      const mod = (await import(/* @vite-ignore */ url)) as UqrModule;
      code.innerHTML = mod.renderSVG(scanned, { border: 2, whiteColor: "#ffffff", blackColor: "#000000" });
      code.setAttribute("aria-label", `QR code of ${scanned}`);
    } catch {
      code.textContent = "The QR code could not be drawn; use the link below.";
    }
    if (!dialog.open) dialog.showModal();
  }

  #appendLog(e: LogEvent): void {
    if (!this.#root) return;
    const log = this.#el(".log");
    const item = document.createElement("li");
    item.className = `lvl-${e.level}`;
    const level = document.createElement("span");
    level.className = "lvl";
    level.textContent = e.level;
    const message = document.createElement("span");
    message.className = "msg";
    message.textContent = e.message;
    item.append(level, message);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(item);
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild?.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  #showIdleBanner(secondsLeft: number): void {
    if (!this.#root) return;
    this.#idleDeadline = Date.now() + secondsLeft * 1000;
    const banner = this.#el(".idle-banner");
    banner.hidden = false;
    const tick = () => {
      const left = Math.max(0, Math.ceil((this.#idleDeadline - Date.now()) / 1000));
      this.#setText(".idle-text", `This preview stops in ${left} s unless you keep working —`);
      if (left <= 0) clearInterval(this.#idleTimer);
    };
    clearInterval(this.#idleTimer);
    tick();
    this.#idleTimer = setInterval(tick, 1000);
  }

  #hideIdleBanner(): void {
    clearInterval(this.#idleTimer);
    if (this.#root) this.#el(".idle-banner").hidden = true;
  }

  #renderBuildError(): void {
    if (!this.#root) return;
    const overlay = this.#el(".build-error");
    const e = this.#buildError;
    overlay.hidden = !e;
    if (!e) return;
    const where = e.file ? `${e.file}${e.line ? `:${e.line}${e.column ? `:${e.column}` : ""}` : ""}` : "";
    this.#setText(".be-loc", where);
    this.#el(".be-loc").hidden = !where;
    this.#setText(".be-msg", e.message);
  }

  #renderEnded(): void {
    if (!this.#root) return;
    const e = this.#ended;
    this.#el(".ended-view").hidden = !e;
    if (!e) {
      this.removeAttribute("ended-reason");
      return;
    }
    this.setAttribute("ended-reason", e.reason);
    this.#setText(".ended-text", `Preview ended: ${END_REASONS[e.reason] ?? e.reason}`);
    this.#setText(".reason", `(${e.reason})`);
  }

  #renderFallback(): void {
    if (!this.#root) return;
    const on = this.fallback;
    this.#el(".stage").hidden = on;
    this.#el(".fallback").hidden = !on;
    const error = this.#el(".fallback-error");
    error.hidden = !this.#startError;
    error.textContent = this.#startError
      ? `The preview could not start: ${this.#startError.message} (${this.#startError.code})`
      : "";
    if (!on) this.#layout();
  }

  // ---- state ----------------------------------------------------------------------------

  #computeState(): PanelState {
    if (this.#appetize) return "ready";
    if (this.#ended) return "ended";
    if (this.#startError) return "error";
    const c = this.#connection;
    if (!c || !this.#session) return "initializing";
    const cs = c.state;
    if (cs === "connecting") return this.#welcomed ? "offline" : this.#sessionBooting ? "booting" : "initializing";
    if (cs === "offline") return "offline";
    if (cs === "booting" || this.#sessionBooting) return "booting";
    if (c.unappliedCount > 0 || cs === "building") return "updating";
    if (cs === "error" || this.#buildError) return "error";
    return "ready";
  }

  #updateState(): void {
    const state = this.#computeState();
    if (this.#root) {
      this.#el(".starting").hidden = !(state === "initializing" || state === "booting") || this.#primaryLoaded;
      if (state === "booting") this.#setText(".starting-text", "Booting the preview machine…");
    }
    this.#renderControls();
    if (state === this.#state && this.getAttribute("state") === state) return;
    this.#state = state;
    this.setAttribute("state", state);
    if (this.#root) {
      this.#setText(".status-text", STATE_LABELS[state]);
      if (state !== "updating") this.#setText(".live", `Preview ${STATE_LABELS[state].replace("…", "").toLowerCase()}`);
    }
    this.#emit("preview-status", {
      state,
      connectionState: this.#connection?.state ?? null,
      detail: this.#statusDetail,
    });
  }

  #emit<K extends keyof PreviewPanelEventMap>(
    type: K,
    detail: PreviewPanelEventMap[K] extends CustomEvent<infer D> ? D : never,
  ): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

if (typeof customElements !== "undefined" && !customElements.get("preview-panel")) {
  customElements.define("preview-panel", PreviewPanel);
  panelParts();
}

declare global {
  interface HTMLElementTagNameMap {
    "preview-panel": PreviewPanel;
  }
}

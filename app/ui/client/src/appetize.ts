/**
 * The Appetize arm of `<preview-panel>`: the Appetize embed it shows in its `fallback` slot when
 * the editor is on Appetize (a flag, the rollout percentage, the kill switch) or the new system
 * could not start a session, and the stages it reports for that arm.
 *
 * The embed is Appetize's documented iframe on `https://appetize.io/embed/{publicKey}` (the
 * public key is now called the build id), taking the query parameters of its app links:
 * `device`, `osVersion`, `scale` (10 to 100, or `auto`) and `autoplay`
 * (https://docs.appetize.io/platform/embedding-apps,
 * https://docs.appetize.io/platform/query-params-reference). `xdocMsg=true` turns on its
 * cross-document messages: the embed posts its events to the parent window, as a string or an
 * object with the name in `type` (https://docs.appetize.io/deprecated/cross-document-messages):
 * `firstFrameReceived` (the device's first frame on screen), `sessionEnded`, `userError`.
 * The same URL is built on the server (app/rollout/appetize_embed.py).
 */

import type { PreviewClient } from "./client.js";
import type { AppetizeSettings, AppetizeStage, PreviewFallback } from "./types.js";

export const DEFAULT_APPETIZE_EMBED_URL = "https://appetize.io/embed/";

export interface AppetizeStageDetail {
  latencyMs?: number;
  message?: string;
  event?: string;
}

/** The `fallback` member of an answer or an `ended` frame, if it is one. */
export function fallbackOf(value: unknown): PreviewFallback | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const f = value as Partial<PreviewFallback>;
  if (f.backend !== "appetize" || typeof f.reason !== "string") return undefined;
  const a = f.appetize as Partial<AppetizeSettings> | null | undefined;
  const appetize = a && typeof a.publicKey === "string" && a.publicKey ? (a as AppetizeSettings) : null;
  return { backend: "appetize", reason: f.reason, appetize };
}

/** The embed's URL: `base` (ending in `/`) + the public key, with the project's parameters. */
export function appetizeEmbedUrl(base: string, settings: AppetizeSettings): string {
  const query = new URLSearchParams();
  if (settings.device) query.set("device", settings.device);
  if (settings.osVersion) query.set("osVersion", settings.osVersion);
  if (settings.scale) query.set("scale", settings.scale);
  // The fallback replaces a preview that starts by itself, so the embed does too.
  query.set("autoplay", "true");
  query.set("xdocMsg", "true");
  const root = base.endsWith("/") ? base : `${base}/`;
  return `${root}${encodeURIComponent(settings.publicKey)}?${query}`;
}

/** The stage an Appetize message stands for, or null for the many it says nothing of. */
export function stageOfMessage(data: unknown): { stage: AppetizeStage; event: string } | null {
  const name =
    typeof data === "string"
      ? data
      : typeof data === "object" && data !== null && typeof (data as { type?: unknown }).type === "string"
        ? (data as { type: string }).type
        : null;
  switch (name) {
    case "firstFrameReceived":
      return { stage: "first_frame", event: name };
    case "sessionEnded":
      return { stage: "ended", event: name };
    case "userError":
      return { stage: "error", event: name };
    default:
      return null;
  }
}

export interface AppetizeEmbedOptions {
  /** Where the iframe goes (the panel's `fallback` part). */
  container: HTMLElement;
  client: PreviewClient;
  projectId: string;
  /** Why this arm (the backend answer's reason; `fallback` after a start failure). */
  reason: string;
  settings: AppetizeSettings;
  /** The panel's own embed base; null: the server's (PREVIEW_APPETIZE_EMBED_URL). */
  embedBase: string | null;
  onStage: (stage: AppetizeStage, detail: AppetizeStageDetail) => void;
}

/** One Appetize embed and its arm session: opened, reported on, ended once. */
export class AppetizeEmbed {
  readonly iframe: HTMLIFrameElement;
  readonly url: string;
  readonly reason: string;
  /** The arm session's id; null when it could not be opened (the embed shows, unreported). */
  readonly sessionId: string | null;
  readonly #client: PreviewClient;
  readonly #onStage: AppetizeEmbedOptions["onStage"];
  readonly #seen = new Set<AppetizeStage>();
  // Reports go out one after another, so they arrive (and are stamped) in the order they happened.
  #reports: Promise<void> = Promise.resolve();
  #ended = false;
  readonly #onMessage = (event: MessageEvent): void => {
    if (event.source !== this.iframe.contentWindow) return;
    const seen = stageOfMessage(event.data);
    if (!seen) return;
    if (seen.stage === "error") this.report("error", { message: `Appetize: ${seen.event}`, event: seen.event });
    else this.report(seen.stage, { event: seen.event });
  };

  private constructor(options: AppetizeEmbedOptions, url: string, sessionId: string | null) {
    this.#client = options.client;
    this.#onStage = options.onStage;
    this.reason = options.reason;
    this.url = url;
    this.sessionId = sessionId;
    this.#seen.add("requested");
    this.iframe = document.createElement("iframe");
    this.iframe.className = "appetize";
    this.iframe.setAttribute("part", "appetize");
    this.iframe.title = "Appetize preview";
    this.iframe.addEventListener("load", () => this.report("embed_loaded", {}));
    window.addEventListener("message", this.#onMessage);
    this.iframe.src = url;
    options.container.prepend(this.iframe);
  }

  /** Opens the arm session (its `requested` stage) and shows the embed. */
  static async open(options: AppetizeEmbedOptions): Promise<AppetizeEmbed> {
    let sessionId: string | null = null;
    let serverUrl: string | null = null;
    try {
      const opened = await options.client.createAppetizeSession(options.projectId, options.reason);
      sessionId = opened.id;
      serverUrl = opened.embedUrl;
    } catch {
      // The embed matters more than its measurement: show it anyway.
    }
    const url =
      options.embedBase !== null || serverUrl === null
        ? appetizeEmbedUrl(options.embedBase ?? DEFAULT_APPETIZE_EMBED_URL, options.settings)
        : serverUrl;
    options.onStage("requested", {});
    return new AppetizeEmbed(options, url, sessionId);
  }

  /** Reports a stage (`requested`, `embed_loaded`, `first_frame`, `ended` once each). */
  report(stage: AppetizeStage, detail: AppetizeStageDetail, keepalive = false): void {
    if (this.#ended) return;
    if (stage !== "error" && stage !== "edit_visible") {
      if (this.#seen.has(stage)) return;
      this.#seen.add(stage);
    }
    if (stage === "ended") this.#close();
    this.#onStage(stage, detail);
    const id = this.sessionId;
    if (id === null) return;
    const body = Object.keys(detail).length > 0 ? detail : undefined;
    const send = (): Promise<void> =>
      this.#client.reportAppetizeStage(id, stage, body, keepalive ? { keepalive } : {}).catch(() => undefined);
    // Sent at once while the page unloads; otherwise after the reports before it.
    this.#reports = keepalive ? send() : this.#reports.then(send);
  }

  /** The editor rebuilt, uploaded and reloaded the app: how long that took, as it measured it. */
  editVisible(latencyMs: number): void {
    if (!Number.isFinite(latencyMs) || latencyMs < 0) throw new RangeError("latencyMs must be a non-negative number");
    this.report("edit_visible", { latencyMs });
  }

  /** Ends the arm session and removes the embed; resolves once the reports went out. */
  end(options: { keepalive?: boolean } = {}): Promise<void> {
    this.report("ended", {}, options.keepalive ?? false);
    return this.#reports;
  }

  #close(): void {
    window.removeEventListener("message", this.#onMessage);
    this.#ended = true;
  }

  /** Takes the embed off the page (after end()). */
  remove(): void {
    this.#close();
    this.iframe.remove();
  }
}

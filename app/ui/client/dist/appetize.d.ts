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
export declare const DEFAULT_APPETIZE_EMBED_URL = "https://appetize.io/embed/";
export interface AppetizeStageDetail {
    latencyMs?: number;
    message?: string;
    event?: string;
}
/** The `fallback` member of an answer or an `ended` frame, if it is one. */
export declare function fallbackOf(value: unknown): PreviewFallback | undefined;
/** The embed's URL: `base` (ending in `/`) + the public key, with the project's parameters. */
export declare function appetizeEmbedUrl(base: string, settings: AppetizeSettings): string;
/** The stage an Appetize message stands for, or null for the many it says nothing of. */
export declare function stageOfMessage(data: unknown): {
    stage: AppetizeStage;
    event: string;
} | null;
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
export declare class AppetizeEmbed {
    #private;
    readonly iframe: HTMLIFrameElement;
    readonly url: string;
    readonly reason: string;
    /** The arm session's id; null when it could not be opened (the embed shows, unreported). */
    readonly sessionId: string | null;
    private constructor();
    /** Opens the arm session (its `requested` stage) and shows the embed. */
    static open(options: AppetizeEmbedOptions): Promise<AppetizeEmbed>;
    /** Reports a stage (`requested`, `embed_loaded`, `first_frame`, `ended` once each). */
    report(stage: AppetizeStage, detail: AppetizeStageDetail, keepalive?: boolean): void;
    /** The editor rebuilt, uploaded and reloaded the app: how long that took, as it measured it. */
    editVisible(latencyMs: number): void;
    /** Ends the arm session and removes the embed; resolves once the reports went out. */
    end(options?: {
        keepalive?: boolean;
    }): Promise<void>;
    /** Takes the embed off the page (after end()). */
    remove(): void;
}

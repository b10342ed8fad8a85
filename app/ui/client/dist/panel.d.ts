/**
 * <preview-panel>: a framework-free Web Component that shows a live preview session in
 * device frames. Importing this module defines the element.
 */
import { type AppetizeStageDetail } from "./appetize.js";
import { PreviewClient, type AccessTokenProvider } from "./client.js";
import type { PreviewConnection } from "./connection.js";
import type { AppetizeStage, BuildErrorEvent, CloseEvent, ConnectionState, Device, EndedEvent, ErrorEvent, FileChangeInput, IdleWarningEvent, LogEvent, OpenEvent, PatchEvent, SeqEvent, Session, SnapshotEvent, TokenEvent, WelcomeEvent } from "./types.js";
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
    "preview-session": CustomEvent<{
        session: Session;
    }>;
    "preview-load": CustomEvent<{
        session: Session;
    }>;
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
    "preview-device": CustomEvent<{
        device: Device;
        landscape: boolean;
    }>;
    /** The panel shows the Appetize embed instead (its arm session's id; null if unreported). */
    "preview-appetize": CustomEvent<{
        reason: string;
        url: string;
        sessionId: string | null;
    }>;
    /** A stage of the Appetize arm, as reported. */
    "preview-appetize-stage": CustomEvent<{
        stage: AppetizeStage;
        detail: AppetizeStageDetail;
    }>;
}
/** Used when the catalogue cannot be loaded. */
export declare const DEFAULT_DEVICES: Device[];
declare const BaseElement: typeof HTMLElement;
export declare class PreviewPanel extends BaseElement {
    #private;
    static get observedAttributes(): string[];
    constructor();
    /** Returns the editor's current (Supabase) access token; the panel starts once it is set. */
    get getAccessToken(): AccessTokenProvider | null;
    set getAccessToken(value: AccessTokenProvider | null);
    get api(): string;
    set api(value: string | null | undefined);
    get projectId(): string | null;
    set projectId(value: string | null | undefined);
    get device(): string | null;
    set device(value: string | null | undefined);
    get template(): string | null;
    set template(value: string | null | undefined);
    /** Start the session from the project's last files (the boolean `restore` attribute). */
    get restore(): boolean;
    set restore(value: boolean);
    /** Device ids shown side by side (the `devices` attribute, space-separated). */
    get devices(): string[];
    set devices(value: string[] | string | null | undefined);
    get autostart(): boolean;
    set autostart(value: boolean | string | null | undefined);
    /** Fallback mode: the `fallback` slot is shown instead of the preview. */
    get fallback(): boolean;
    set fallback(value: boolean | string | null | undefined);
    /** The Appetize embed's base URL (default: the server's, PREVIEW_APPETIZE_EMBED_URL). */
    get appetizeEmbedUrl(): string | null;
    set appetizeEmbedUrl(value: string | null | undefined);
    /** The Appetize embed shown instead of the new system's preview, or null. */
    get appetize(): {
        reason: string;
        url: string;
        sessionId: string | null;
        iframe: HTMLIFrameElement;
    } | null;
    /**
     * On Appetize, the editor rebuilt, uploaded and reloaded the app after an edit: `latencyMs` is
     * how long that took, as the editor measured it (the A/B report's edit-to-visible).
     */
    reportEditVisible(latencyMs: number): void;
    /** Several devices at once (the toggle, or the `devices` attribute). */
    get sideBySide(): boolean;
    set sideBySide(value: boolean);
    get landscape(): boolean;
    set landscape(value: boolean);
    get state(): PanelState;
    get session(): Session | null;
    get connection(): PreviewConnection | null;
    get client(): PreviewClient | null;
    /** The device catalogue (after it loaded). */
    get catalogue(): Device[];
    /** The iframes showing the preview (the first one is the primary). */
    get iframes(): HTMLIFrameElement[];
    connectedCallback(): void;
    disconnectedCallback(): void;
    attributeChangedCallback(name: string, oldValue: string | null, value: string | null): void;
    /** Starts a session (once); resolves with it, or null if it could not start. */
    start(): Promise<Session | null>;
    /** Ends the session (DELETE) and shows the ended state. */
    end(options?: {
        keepalive?: boolean;
    }): Promise<void>;
    /** Sends a patch; returns its seq, or null while no session is connected (it is queued). */
    sendChanges(changes: FileChangeInput[]): number | null;
    writeFile(path: string, content: string): number | null;
    deleteFile(path: string): number | null;
    /** Reloads every preview iframe (the app's state is lost; HMR keeps it otherwise). */
    reload(): void;
    /** Keep-alive now (what the idle banner's button does). */
    keepAlive(): void;
    addEventListener<K extends keyof PreviewPanelEventMap>(type: K, listener: (this: PreviewPanel, ev: PreviewPanelEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
    addEventListener<K extends keyof HTMLElementEventMap>(type: K, listener: (this: HTMLElement, ev: HTMLElementEventMap[K]) => unknown, options?: boolean | AddEventListenerOptions): void;
    addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
}
declare global {
    interface HTMLElementTagNameMap {
        "preview-panel": PreviewPanel;
    }
}
export {};

/**
 * The editor socket of a preview session (docs/protocol.md): numbered patches that are never
 * lost and never applied twice, resume after reconnects, keep-alive while the page is visible,
 * session-token refresh.
 *
 * The editor is the source of truth for the session's files. This connection keeps a mirror of
 * every file it sent or received; when the server's edit log is lost (a `welcome` with another
 * epoch), it re-sends the mirror as the new log's first patches, so the preview ends up with
 * every file the editor has, acknowledged or not. Binary files travel as base64 with
 * `encoding: "base64"` and are kept (and re-sent) so.
 */
import { Emitter } from "./emitter.js";
import type { PreviewClient } from "./client.js";
import type { ConnectionEventMap, ConnectionState, FileChangeInput, MachineState, Session, TokenGrant } from "./types.js";
export interface ConnectionOptions {
    /** End the session (DELETE with `keepalive`) when the page is hidden for good (`pagehide`). Default true. */
    endOnPageHide?: boolean;
    /** Keep-alive `ping` interval while the page is visible, in ms. Default 20 000. */
    heartbeatIntervalMs?: number;
    /** Called after every token refresh (e.g. to refresh the preview origin's cookie). */
    onTokenRefreshed?: (grant: TokenGrant) => void;
    /** A WebSocket implementation (defaults to the global one). */
    WebSocket?: typeof WebSocket;
}
/**
 * An open editor socket. Create it with `client.connect(session)`.
 *
 * Patches go out one at a time (the next one after the previous one's `ack`), so that a
 * conflict never reorders this editor's own edits.
 */
export declare class PreviewConnection extends Emitter<ConnectionEventMap> {
    #private;
    readonly client: PreviewClient;
    readonly sessionId: string;
    constructor(client: PreviewClient, session: Session, options?: ConnectionOptions);
    /** The session, with the current token. */
    get session(): Session;
    /** The current session token (for the socket and the preview origin). */
    get token(): string;
    get tokenExpiresAt(): string;
    /** "connecting" / "offline" while the socket is down, else the machine's state. */
    get state(): ConnectionState;
    get machineState(): MachineState | null;
    /** The highest seq this editor knows (its own acknowledged patches and the ones it received). */
    get lastSeq(): number;
    /** The server's edit-log epoch (null before the first welcome). */
    get epoch(): string | null;
    /** The highest seq the machine reported as applied. */
    get appliedSeq(): number;
    /** Local patches not acknowledged yet. */
    get pendingCount(): number;
    /** Local patches not applied by the preview yet (pending or acknowledged). */
    get unappliedCount(): number;
    /** True once the socket is open and in sync (patches go out at once). */
    get connected(): boolean;
    get ended(): boolean;
    get closed(): boolean;
    /**
     * Queues a patch and returns the seq it was given (it may get another one if the socket
     * reconnects or another editor wrote first: see the `ack` event).
     */
    send(changes: readonly FileChangeInput[]): number;
    /** Keep-alive: a `ping` on the socket (or an HTTP heartbeat while the socket is down). */
    ping(): void;
    /** Gets a new session token now (deduplicated); schedules the next refresh. */
    refreshToken(): Promise<TokenGrant>;
    /** Ends the session on the server (DELETE) and closes the connection. */
    end(options?: {
        keepalive?: boolean;
    }): Promise<void>;
    /** Stops everything (socket, timers, page listeners) without ending the session. */
    close(): void;
}

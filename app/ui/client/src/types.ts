/** Types shared by the client, the connection, the panel and the React wrapper. */

export type Platform = "web" | "ios" | "android";
export type DeviceFrame = "phone" | "tablet" | "desktop";

/** A device of the catalogue (`GET /api/preview/devices`); width/height are CSS pixels in portrait. */
export interface Device {
  id: string;
  name: string;
  platform: Platform;
  width: number;
  height: number;
  pixelRatio: number;
  frame: DeviceFrame;
}

export type SessionStatus = "booting" | "active" | "ended" | "failed";

/** A preview session as the HTTP API returns it (times are ISO 8601 strings). */
export interface Session {
  id: string;
  status: SessionStatus;
  projectId: string;
  template: string;
  region: string;
  deviceType: string | null;
  device: string | null;
  machineId: string | null;
  previewUrl: string;
  previewOrigin: string;
  wsUrl: string;
  token: string;
  tokenExpiresAt: string;
  expiresAt: string;
  createdAt: string;
  lastActivity: string | null;
  /** Only in createSession's answer: the kept files it started from, or null (`restore`). */
  restored?: RestoredFiles | null;
}

/** The project's last files a new session started from (docs/api.md, "Reopening a project"). */
export interface RestoredFiles {
  fromSession: string;
  endedAt: string;
  /** The seq of the new session's log that holds them; the first patch is the next one. */
  seq: number;
  /** The machine applied them before the answer (false while it boots, or if it took too long). */
  hydrated: boolean;
}

export interface CreateSessionOptions {
  projectId: string;
  device?: string;
  deviceType?: string;
  template?: string;
  region?: string;
  options?: Record<string, unknown>;
  /**
   * Start from the project's last files (kept for a while after its last session ended), so
   * the editor need not re-send them; `restored` in the answer says whether there were any.
   */
  restore?: boolean;
}

export interface TokenGrant {
  token: string;
  tokenExpiresAt: string;
}

export interface ShareLink {
  url: string;
  expiresAt: string;
  /** `expo` sessions: the link as Expo Go opens it (exp:// or exps://); null otherwise. */
  expoGoUrl?: string | null;
  /** `expo` sessions on ios/android with Expo Go on Appetize: an embed launching it. */
  appetizeUrl?: string | null;
}

/**
 * One file change of a patch as it travels: write `content` to `path`, or delete `path`. A
 * binary file (an image, a font) has `encoding: "base64"` and its bytes as standard base64
 * (padded, no whitespace); its size cap counts the decoded bytes (docs/protocol.md).
 */
export type FileChange =
  | { path: string; content: string; encoding?: "base64" }
  | { path: string; delete: true };

/** What `send` takes: a {@link FileChange}, or a binary file's bytes (sent as base64). */
export type FileChangeInput = FileChange | { path: string; content: Uint8Array | ArrayBuffer };

/** The preview machine's state as the server reports it. */
export type MachineState = "booting" | "ready" | "building" | "error" | "offline";

/** The connection's state: the machine's, or "connecting" / "offline" while the socket is down. */
export type ConnectionState = MachineState | "connecting";

export type EndReason =
  | "deleted"
  | "idle_timeout"
  | "max_duration"
  | "boot_timeout"
  | "machine_lost"
  | (string & {});

export type LogLevel = "debug" | "log" | "info" | "warn" | "error";

export interface StatusEvent {
  state: ConnectionState;
  detail: string | null;
}
export interface WelcomeEvent {
  sessionId: string;
  head: number;
  applied: number;
  state: MachineState;
  detail: string | null;
}
export interface SeqEvent {
  seq: number;
  /** ms from this editor's send of `seq`; null when this editor did not send it. */
  latencyMs: number | null;
}
export interface BuildErrorEvent {
  message: string;
  file: string | null;
  line: number;
  column: number;
}
export interface LogEvent {
  level: LogLevel | (string & {});
  message: string;
  source: string | null;
}
export interface IdleWarningEvent {
  secondsLeft: number;
}
export interface EndedEvent {
  reason: EndReason;
  status: SessionStatus | (string & {});
  /** Set when the session never started (a boot or wake failed): show Appetize instead. */
  fallback?: PreviewFallback;
}
/** A project's Appetize settings, as migrated from the editor's Appetize previews. */
export interface AppetizeSettings {
  publicKey: string;
  platform: string | null;
  device: string | null;
  osVersion: string | null;
  scale: string | null;
}
/** `GET /api/preview/backend`: which preview system this editor uses, and why. */
export interface BackendAnswer {
  backend: "fly" | "local" | "appetize";
  reason: "flag" | "percentage" | "kill_switch" | "fallback" | "platform" | "default";
  detail: string;
  appetize: AppetizeSettings | null;
}
/** The `fallback` member of a start failure's answer or of an `ended` frame. */
export interface PreviewFallback {
  backend: "appetize";
  /** pool_exhausted, boot_failed, wake_failed or repeated_failures. */
  reason: string;
  appetize: AppetizeSettings | null;
}
/** `POST /api/preview/appetize-sessions`. */
export interface AppetizeSession {
  id: string;
  appetize: AppetizeSettings;
  embedUrl: string;
}
export type AppetizeStage = "requested" | "embed_loaded" | "first_frame" | "edit_visible" | "error" | "ended";
export interface ErrorEvent {
  code: string;
  message: string;
  seq?: number;
  head?: number;
}
export interface PatchEvent {
  seq: number;
  changes: FileChange[];
}
export interface SnapshotEvent {
  seq: number;
  files: Record<string, string>;
  deleted: string[];
  /** The `files` that are binary: their values are base64. */
  binary: string[];
}
/**
 * The server lost the session's edits (its store was reset) and began a new edit log: this
 * connection re-sends every file it knows (sent or received) as the new log's first patches.
 */
export interface ResyncEvent {
  epoch: string;
  previousEpoch: string;
  /** How many files (and deletions) are re-sent. */
  files: number;
}
export interface OpenEvent {
  /** 1 for the first socket, then counts reconnections. */
  attempt: number;
}
export interface CloseEvent {
  code: number;
  reason: string;
  /** false once the session ended or `close()` was called. */
  willReconnect: boolean;
}
export interface TokenEvent extends TokenGrant {
  previewOrigin: string;
}

/** Events of a {@link PreviewConnection}. */
export interface ConnectionEventMap {
  open: OpenEvent;
  close: CloseEvent;
  welcome: WelcomeEvent;
  status: StatusEvent;
  ack: SeqEvent;
  applied: SeqEvent;
  buildError: BuildErrorEvent;
  log: LogEvent;
  idleWarning: IdleWarningEvent;
  ended: EndedEvent;
  error: ErrorEvent;
  patch: PatchEvent;
  snapshot: SnapshotEvent;
  resync: ResyncEvent;
  /** The session token was refreshed (the preview origin's cookie should be refreshed too). */
  token: TokenEvent;
}

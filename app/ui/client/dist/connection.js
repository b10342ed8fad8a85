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
import { PreviewApiError } from "./errors.js";
import { fallbackOf } from "./appetize.js";
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 10_000;
const TOKEN_MARGIN_MS = 60_000;
const HELLO_TIMEOUT_MS = 10_000;
const CATCHUP_TIMEOUT_MS = 5_000;
const MAX_TIMER_MS = 2_147_483_647;
const MACHINE_STATES = new Set(["booting", "ready", "building", "error", "offline"]);
/** Re-sent files go out in patches of at most this many characters of JSON (frames: 1 MiB). */
const RESYNC_CHUNK_CHARS = 256 * 1024;
const MAX_CHANGES_PER_PATCH = 2000;
function now() {
    return typeof performance !== "undefined" ? performance.now() : Date.now();
}
function pageVisible() {
    return typeof document === "undefined" || document.visibilityState === "visible";
}
function num(value, fallback = 0) {
    return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}
function str(value) {
    return typeof value === "string" ? value : null;
}
function strings(value) {
    return Array.isArray(value) ? value.filter((item) => typeof item === "string") : [];
}
/** Standard base64, padded, no whitespace: what the server takes (RFC 4648). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/**
 * A binary file's bytes as base64: btoa takes a string of one char per byte, built in slices
 * (an argument list has a length limit); `apply` takes the typed array as it is, which is
 * several times faster than spreading it (512 KiB in about 5 ms).
 */
function toBase64(bytes) {
    const slices = [];
    for (let i = 0; i < bytes.length; i += 0x8000) {
        slices.push(String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)));
    }
    return btoa(slices.join(""));
}
function binaryChange(path, content) {
    return { path, content, encoding: "base64" };
}
function normalizeChanges(changes) {
    if (!Array.isArray(changes) || changes.length === 0) {
        throw new TypeError("a patch needs at least one change");
    }
    const paths = new Set();
    return changes.map((change) => {
        if (!change || typeof change.path !== "string" || change.path === "") {
            throw new TypeError("every change needs a path");
        }
        // The server refuses a patch that names a file twice (docs/protocol.md).
        if (paths.has(change.path))
            throw new TypeError(`${change.path} appears twice in one patch`);
        paths.add(change.path);
        if ("delete" in change && change.delete === true) {
            if ("encoding" in change)
                throw new TypeError(`deletion of ${change.path} has an encoding`);
            return { path: change.path, delete: true };
        }
        if (!("content" in change))
            throw new TypeError(`change of ${change.path} needs content or delete: true`);
        const { content } = change;
        if (content instanceof Uint8Array)
            return binaryChange(change.path, toBase64(content));
        if (content instanceof ArrayBuffer)
            return binaryChange(change.path, toBase64(new Uint8Array(content)));
        const encoding = "encoding" in change ? change.encoding : undefined;
        if (typeof content !== "string")
            throw new TypeError(`content of ${change.path} is not a string or bytes`);
        if (encoding === undefined)
            return { path: change.path, content };
        if (encoding !== "base64")
            throw new TypeError(`unknown encoding of ${change.path}: ${String(encoding)}`);
        if (!BASE64.test(content))
            throw new TypeError(`content of ${change.path} is not padded base64`);
        return binaryChange(change.path, content);
    });
}
function parseChanges(value) {
    if (!Array.isArray(value))
        return [];
    const out = [];
    for (const item of value) {
        if (!item || typeof item !== "object")
            continue;
        const c = item;
        if (typeof c.path !== "string")
            continue;
        if (c.delete === true)
            out.push({ path: c.path, delete: true });
        else if (typeof c.content !== "string")
            continue;
        else if (c.encoding === "base64")
            out.push(binaryChange(c.path, c.content));
        else
            out.push({ path: c.path, content: c.content });
    }
    return out;
}
/** Whether `change` is what a snapshot shows for its path. */
function shownBy(change, files, gone, binary) {
    if ("delete" in change)
        return gone.has(change.path) || !(change.path in files);
    return files[change.path] === change.content && binary.has(change.path) === (change.encoding === "base64");
}
function isEndedError(err) {
    return (err instanceof PreviewApiError &&
        (err.code === "session_ended" || err.status === 404 || err.status === 409));
}
/**
 * An open editor socket. Create it with `client.connect(session)`.
 *
 * Patches go out one at a time (the next one after the previous one's `ack`), so that a
 * conflict never reorders this editor's own edits.
 */
export class PreviewConnection extends Emitter {
    client;
    sessionId;
    #session;
    #options;
    #token;
    #tokenExpiresAt;
    #refreshing = null;
    #ws = null;
    #phase = "idle";
    #opened = false;
    #failedOpens = 0;
    #attempt = 0;
    #opens = 0;
    #lastSeq = 0;
    #appliedSeq = 0;
    #catchupHead = 0;
    #resyncing = false;
    #pending = [];
    /** The edit log's epoch that seqs count in (null before the first welcome). */
    #epoch = null;
    /** Every file this editor sent or received, as its last change (a deletion once deleted). */
    #files = new Map();
    #resendFiles = false;
    #sentAt = new Map();
    #ownUnapplied = new Set();
    #state = "connecting";
    #machineState = null;
    #closed = false;
    #ended = false;
    #reconnectTimer;
    #tokenTimer;
    #helloTimer;
    #catchupTimer;
    #heartbeatTimer;
    #waitingForVisible = false;
    constructor(client, session, options = {}) {
        super();
        this.client = client;
        this.sessionId = session.id;
        this.#session = { ...session };
        this.#options = options;
        this.#token = session.token;
        this.#tokenExpiresAt = Date.parse(session.tokenExpiresAt);
        if (typeof document !== "undefined") {
            document.addEventListener("visibilitychange", this.#onVisibility);
        }
        if (typeof window !== "undefined" && options.endOnPageHide !== false) {
            window.addEventListener("pagehide", this.#onPageHide);
        }
        this.#heartbeatTimer = setInterval(() => {
            if (pageVisible())
                this.ping();
        }, options.heartbeatIntervalMs ?? 20_000);
        this.#scheduleTokenRefresh();
        // Open in a microtask so that listeners added right after connect() see every event.
        queueMicrotask(() => this.#open());
    }
    /** The session, with the current token. */
    get session() {
        return { ...this.#session, token: this.#token };
    }
    /** The current session token (for the socket and the preview origin). */
    get token() {
        return this.#token;
    }
    get tokenExpiresAt() {
        return this.#session.tokenExpiresAt;
    }
    /** "connecting" / "offline" while the socket is down, else the machine's state. */
    get state() {
        return this.#state;
    }
    get machineState() {
        return this.#machineState;
    }
    /** The highest seq this editor knows (its own acknowledged patches and the ones it received). */
    get lastSeq() {
        return this.#lastSeq;
    }
    /** The server's edit-log epoch (null before the first welcome). */
    get epoch() {
        return this.#epoch;
    }
    /** The highest seq the machine reported as applied. */
    get appliedSeq() {
        return this.#appliedSeq;
    }
    /** Local patches not acknowledged yet. */
    get pendingCount() {
        return this.#pending.length;
    }
    /** Local patches not applied by the preview yet (pending or acknowledged). */
    get unappliedCount() {
        return this.#pending.length + this.#ownUnapplied.size;
    }
    /** True once the socket is open and in sync (patches go out at once). */
    get connected() {
        return this.#phase === "ready";
    }
    get ended() {
        return this.#ended;
    }
    get closed() {
        return this.#closed || this.#ended;
    }
    /**
     * Queues a patch and returns the seq it was given (it may get another one if the socket
     * reconnects or another editor wrote first: see the `ack` event).
     */
    send(changes) {
        if (this.closed)
            throw new Error("the preview connection is closed");
        const copy = normalizeChanges(changes);
        const last = this.#pending.length > 0 ? this.#pending[this.#pending.length - 1].seq : this.#lastSeq;
        const seq = Math.max(last, this.#lastSeq) + 1;
        this.#remember(copy);
        this.#pending.push({ seq, changes: copy, key: JSON.stringify(copy), sent: false });
        this.#pump();
        return seq;
    }
    /** Keep-alive: a `ping` on the socket (or an HTTP heartbeat while the socket is down). */
    ping() {
        if (this.closed)
            return;
        if (this.#raw({ type: "ping" }))
            return;
        this.client.heartbeat(this.sessionId).catch((err) => {
            if (err instanceof PreviewApiError && err.code === "session_ended")
                this.#end("session_ended", "ended");
        });
    }
    /** Gets a new session token now (deduplicated); schedules the next refresh. */
    refreshToken() {
        if (this.#refreshing)
            return this.#refreshing;
        const run = this.client.refreshToken(this.sessionId).then((grant) => {
            this.#token = grant.token;
            this.#tokenExpiresAt = Date.parse(grant.tokenExpiresAt);
            this.#session = { ...this.#session, token: grant.token, tokenExpiresAt: grant.tokenExpiresAt };
            if (!this.closed) {
                this.#scheduleTokenRefresh();
                this.emit("token", { ...grant, previewOrigin: this.#session.previewOrigin });
                this.#options.onTokenRefreshed?.(grant);
            }
            return grant;
        });
        this.#refreshing = run;
        const clear = () => {
            if (this.#refreshing === run)
                this.#refreshing = null;
        };
        run.then(clear, clear);
        return run;
    }
    /** Ends the session on the server (DELETE) and closes the connection. */
    async end(options = {}) {
        if (this.#ended) {
            this.close();
            return;
        }
        const request = this.client.endSession(this.sessionId, { keepalive: options.keepalive === true });
        this.#end("deleted", "ended");
        try {
            await request;
        }
        catch (err) {
            if (!(err instanceof PreviewApiError && err.status === 404))
                throw err;
        }
    }
    /** Stops everything (socket, timers, page listeners) without ending the session. */
    close() {
        if (this.#closed)
            return;
        this.#closed = true;
        this.#teardown();
    }
    // ---- socket -------------------------------------------------------------------------
    #open() {
        if (this.closed || this.#ws)
            return;
        if (!pageVisible() && this.#opens > 0) {
            // Nothing goes out while the page is hidden: reconnect when it is visible again.
            this.#waitingForVisible = true;
            return;
        }
        const WS = this.#options.WebSocket ?? WebSocket;
        const base = this.#session.wsUrl;
        const url = `${base}${base.includes("?") ? "&" : "?"}token=${encodeURIComponent(this.#token)}`;
        this.#setState("connecting", null);
        this.#phase = "connecting";
        this.#opened = false;
        let ws;
        try {
            ws = new WS(url);
        }
        catch (err) {
            this.emit("error", { code: "socket_error", message: err instanceof Error ? err.message : String(err) });
            this.#failedOpens += 1;
            this.#scheduleReconnect();
            return;
        }
        this.#ws = ws;
        ws.onopen = () => {
            if (this.#ws !== ws)
                return;
            this.#opened = true;
            this.#failedOpens = 0;
            this.#opens += 1;
            this.emit("open", { attempt: this.#opens });
            this.#sendHello();
        };
        ws.onmessage = (event) => {
            if (this.#ws !== ws || typeof event.data !== "string")
                return;
            let frame;
            try {
                frame = JSON.parse(event.data);
            }
            catch {
                return;
            }
            if (frame && typeof frame === "object" && typeof frame.type === "string") {
                this.#onFrame(frame);
            }
        };
        ws.onclose = (event) => {
            if (this.#ws !== ws)
                return;
            this.#onSocketClosed(event.code, event.reason);
        };
        ws.onerror = () => {
            /* a close event follows */
        };
    }
    #onSocketClosed(code, reason) {
        this.#ws = null;
        this.#phase = "idle";
        clearTimeout(this.#helloTimer);
        clearTimeout(this.#catchupTimer);
        if (!this.#opened)
            this.#failedOpens += 1;
        for (const p of this.#pending)
            p.sent = false;
        if (code === 4000) {
            this.emit("close", { code, reason, willReconnect: false });
            this.#end(reason || "ended", "ended");
            return;
        }
        const willReconnect = !this.closed;
        this.emit("close", { code, reason, willReconnect });
        if (!willReconnect)
            return;
        this.#setState("offline", null);
        this.#scheduleReconnect();
    }
    #scheduleReconnect() {
        if (this.closed)
            return;
        clearTimeout(this.#reconnectTimer);
        const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.#attempt);
        this.#attempt += 1;
        const delay = base / 2 + Math.random() * (base / 2);
        this.#reconnectTimer = setTimeout(() => void this.#reconnect(), delay);
    }
    async #reconnect() {
        if (this.closed)
            return;
        const expiresSoon = this.#tokenExpiresAt - Date.now() < TOKEN_MARGIN_MS;
        if (expiresSoon || this.#failedOpens >= 2) {
            try {
                await this.refreshToken();
                this.#failedOpens = 0;
            }
            catch (err) {
                if (isEndedError(err)) {
                    this.#end("session_ended", "ended");
                }
                else {
                    this.#scheduleReconnect();
                }
                return;
            }
        }
        this.#open();
    }
    #raw(frame) {
        const ws = this.#ws;
        if (!ws || ws.readyState !== 1 /* OPEN */)
            return false;
        try {
            ws.send(JSON.stringify({ v: 1, ...frame }));
            return true;
        }
        catch {
            return false;
        }
    }
    #sendHello() {
        this.#phase = "hello";
        clearTimeout(this.#catchupTimer);
        clearTimeout(this.#helloTimer);
        const hello = { type: "hello", lastSeq: this.#lastSeq };
        if (this.#epoch !== null)
            hello.epoch = this.#epoch;
        this.#raw(hello);
        this.#helloTimer = setTimeout(() => {
            // No welcome: drop the socket, the reconnect says hello again.
            if (this.#phase === "hello")
                this.#ws?.close(3000, "no welcome");
        }, HELLO_TIMEOUT_MS);
    }
    // ---- frames -------------------------------------------------------------------------
    #onFrame(f) {
        switch (f.type) {
            case "welcome":
                return this.#onWelcome(f);
            case "patch":
                return this.#onPatch(num(f.seq, -1), parseChanges(f.changes));
            case "snapshot":
                return this.#onSnapshot(f);
            case "ack":
                return this.#onAck(num(f.seq, -1));
            case "applied":
                return this.#onApplied(num(f.seq, -1));
            case "status": {
                const state = str(f.state);
                if (state && MACHINE_STATES.has(state)) {
                    this.#machineState = state;
                    this.#setState(state, str(f.detail));
                }
                return;
            }
            case "log":
                this.emit("log", { level: str(f.level) ?? "log", message: str(f.message) ?? "", source: str(f.source) });
                return;
            case "buildError":
                this.emit("buildError", {
                    message: str(f.message) ?? "",
                    file: str(f.file),
                    line: num(f.line),
                    column: num(f.column),
                });
                return;
            case "error":
                return this.#onError(f);
            case "idleWarning":
                this.emit("idleWarning", { secondsLeft: num(f.secondsLeft) });
                if (pageVisible())
                    this.#raw({ type: "ping" });
                return;
            case "ended":
                this.#end(str(f.reason) ?? "ended", str(f.status) ?? "ended", fallbackOf(f.fallback));
                return;
            default:
                return; // pong and anything newer
        }
    }
    #onWelcome(f) {
        clearTimeout(this.#helloTimer);
        this.#resyncing = false;
        this.#attempt = 0;
        const head = num(f.head);
        const applied = num(f.applied);
        const state = str(f.state);
        if (state && MACHINE_STATES.has(state))
            this.#machineState = state;
        const epoch = str(f.epoch);
        if (epoch !== null && this.#epoch !== null && epoch !== this.#epoch)
            this.#startOver(epoch);
        if (epoch !== null)
            this.#epoch = epoch;
        this.#markApplied(applied);
        // The server is the authority: a head below what we know means it lost patches.
        if (head < this.#lastSeq)
            this.#lastSeq = head;
        this.#catchupHead = head;
        this.emit("welcome", {
            sessionId: str(f.sessionId) ?? this.sessionId,
            head,
            applied,
            state: this.#machineState ?? "offline",
            detail: str(f.detail),
        });
        this.#setState(this.#machineState ?? "offline", str(f.detail));
        this.#phase = "catchup";
        this.#checkCaughtUp();
    }
    #checkCaughtUp() {
        if (this.#phase !== "catchup")
            return;
        clearTimeout(this.#catchupTimer);
        if (this.#lastSeq >= this.#catchupHead) {
            this.#flush();
            return;
        }
        this.#catchupTimer = setTimeout(() => {
            if (this.#phase === "catchup")
                this.#sendHello();
        }, CATCHUP_TIMEOUT_MS);
    }
    #onPatch(seq, changes) {
        if (seq <= this.#lastSeq)
            return; // already known: never apply twice
        if (seq > this.#lastSeq + 1) {
            // A gap: ask for what we missed.
            if (this.#phase !== "hello")
                this.#sendHello();
            return;
        }
        const key = JSON.stringify(changes);
        const own = this.#pending.findIndex((p) => p.seq === seq && p.key === key);
        this.#lastSeq = seq;
        if (this.#resendFiles) {
            // Catching up with a log that lost our edits: another tab re-sent its files first. Ours
            // are re-sent next and win; only files we do not hold are taken from it.
            changes = changes.filter((c) => !this.#files.has(c.path));
            this.#remember(changes);
            if (changes.length > 0)
                this.emit("patch", { seq, changes });
            this.#checkCaughtUp();
            return;
        }
        this.#remember(changes);
        if (own >= 0) {
            // Our own patch (its ack was lost): count it as acknowledged.
            this.#acknowledge(own, seq);
        }
        else {
            this.#sentAt.delete(seq);
            this.emit("patch", { seq, changes });
        }
        this.#checkCaughtUp();
    }
    #onSnapshot(f) {
        const seq = num(f.seq, -1);
        if (seq < 0 || seq < this.#lastSeq)
            return;
        const files = {};
        if (f.files && typeof f.files === "object") {
            for (const [path, content] of Object.entries(f.files)) {
                if (typeof content === "string")
                    files[path] = content;
            }
        }
        const deleted = strings(f.deleted);
        const binaryPaths = strings(f.binary).filter((path) => path in files);
        const gone = new Set(deleted);
        const binary = new Set(binaryPaths);
        // Pending patches numbered within the snapshot whose changes it already shows were appended
        // (their acks were lost); the others are renumbered and sent after it.
        for (let i = this.#pending.length - 1; i >= 0; i--) {
            const p = this.#pending[i];
            if (p.seq > seq)
                continue;
            if (p.changes.every((c) => shownBy(c, files, gone, binary)))
                this.#acknowledge(i, p.seq);
        }
        this.#lastSeq = seq;
        const shown = [
            ...Object.entries(files).map(([path, content]) => binary.has(path) ? binaryChange(path, content) : { path, content }),
            ...deleted.map((path) => ({ path, delete: true })),
        ];
        if (this.#resendFiles) {
            // As for patches while re-sending after a reset: ours win, the rest is taken.
            this.#remember(shown.filter((c) => !this.#files.has(c.path)));
        }
        else {
            this.#files.clear();
            this.#remember(shown);
            for (const p of this.#pending)
                this.#remember(p.changes);
        }
        this.emit("snapshot", { seq, files, deleted, binary: binaryPaths });
        this.#checkCaughtUp();
    }
    #acknowledge(index, seq) {
        this.#pending.splice(index, 1);
        if (seq > this.#lastSeq)
            this.#lastSeq = seq;
        if (seq > this.#appliedSeq)
            this.#ownUnapplied.add(seq);
        const sent = this.#sentAt.get(seq);
        this.emit("ack", { seq, latencyMs: sent === undefined ? null : Math.round(now() - sent) });
    }
    #onAck(seq) {
        const index = this.#pending.findIndex((p) => p.seq === seq && p.sent);
        if (index < 0)
            return;
        this.#acknowledge(index, seq);
        this.#pump();
    }
    #markApplied(seq) {
        if (seq > this.#appliedSeq)
            this.#appliedSeq = seq;
        for (const s of this.#ownUnapplied)
            if (s <= seq)
                this.#ownUnapplied.delete(s);
    }
    #onApplied(seq) {
        if (seq < 0)
            return;
        this.#markApplied(seq);
        const sent = this.#sentAt.get(seq);
        for (const s of this.#sentAt.keys())
            if (s <= seq)
                this.#sentAt.delete(s);
        this.emit("applied", { seq, latencyMs: sent === undefined ? null : Math.round(now() - sent) });
    }
    #onError(f) {
        const code = str(f.code) ?? "error";
        const message = str(f.message) ?? code;
        // A patch numbered under an epoch that is gone: the welcome that announced the new one
        // already queued its content again (the mirror), so there is nothing to drop here.
        if (code === "stale_epoch")
            return;
        if (code === "seq_conflict") {
            // Someone else wrote first: resync once, ignore further conflicts until the welcome.
            if (!this.#resyncing) {
                this.#resyncing = true;
                for (const p of this.#pending)
                    p.sent = false;
                this.#sendHello();
            }
            return;
        }
        const detail = { code, message };
        if (typeof f.seq === "number")
            detail.seq = f.seq;
        if (typeof f.head === "number")
            detail.head = f.head;
        if (code === "session_ended") {
            this.emit("error", detail);
            this.#end("session_ended", "ended");
            return;
        }
        if (typeof f.seq === "number") {
            // The patch was refused (nothing changed, the seq was not used) or the machine rejected it.
            const seq = f.seq;
            this.#ownUnapplied.delete(seq);
            this.#sentAt.delete(seq);
            const index = this.#pending.findIndex((p) => p.seq === seq);
            if (index >= 0) {
                this.#pending.splice(index, 1);
                this.emit("error", detail);
                if (this.#phase === "ready")
                    this.#flush();
                return;
            }
        }
        this.emit("error", detail);
    }
    // ---- sending patches ----------------------------------------------------------------
    /** Keeps the mirror of the session's files up to date with `changes`. */
    #remember(changes) {
        for (const change of changes)
            this.#files.set(change.path, change);
    }
    /**
     * The server's edit log is not the one our seqs count in (its store lost it): forget the
     * numbering, and re-send every file we know once in sync with the new log.
     */
    #startOver(epoch) {
        const previousEpoch = this.#epoch ?? "";
        this.#lastSeq = 0;
        this.#appliedSeq = 0;
        this.#pending = [];
        this.#sentAt.clear();
        this.#ownUnapplied.clear();
        this.#resendFiles = true;
        this.emit("resync", { epoch, previousEpoch, files: this.#files.size });
    }
    /** The mirror as patches (content chunked), for the new log after a reset. */
    #mirrorPatches() {
        const patches = [];
        let changes = [];
        let size = 0;
        const close = () => {
            if (changes.length === 0)
                return;
            patches.push({ seq: 0, changes, key: JSON.stringify(changes), sent: false });
            changes = [];
            size = 0;
        };
        for (const change of this.#files.values()) {
            // As framed: escaping can make a file's JSON several times its length.
            const length = JSON.stringify(change).length;
            if (changes.length >= MAX_CHANGES_PER_PATCH || (size > 0 && size + length > RESYNC_CHUNK_CHARS)) {
                close();
            }
            changes.push(change);
            size += length;
        }
        close();
        return patches;
    }
    /** In sync: renumber what is pending from lastSeq + 1 and send the first one. */
    #flush() {
        clearTimeout(this.#catchupTimer);
        this.#phase = "ready";
        if (this.#resendFiles) {
            this.#resendFiles = false;
            this.#pending = [...this.#mirrorPatches(), ...this.#pending];
        }
        let seq = this.#lastSeq;
        for (const s of this.#sentAt.keys())
            if (s > seq)
                this.#sentAt.delete(s);
        for (const p of this.#pending) {
            seq += 1;
            p.seq = seq;
            p.sent = false;
        }
        this.#pump();
    }
    /** One patch in flight at a time: send the first pending one unless it is out already. */
    #pump() {
        if (this.#phase !== "ready")
            return;
        const first = this.#pending[0];
        if (!first || first.sent)
            return;
        const patch = { type: "patch", seq: first.seq, changes: first.changes };
        if (this.#epoch !== null)
            patch.epoch = this.#epoch;
        if (this.#raw(patch)) {
            first.sent = true;
            this.#sentAt.set(first.seq, now());
            if (this.#sentAt.size > 1000) {
                const oldest = this.#sentAt.keys().next().value;
                if (oldest !== undefined)
                    this.#sentAt.delete(oldest);
            }
        }
    }
    // ---- lifecycle ----------------------------------------------------------------------
    #setState(state, detail) {
        this.#state = state;
        this.emit("status", { state, detail });
    }
    #scheduleTokenRefresh() {
        clearTimeout(this.#tokenTimer);
        if (this.closed || Number.isNaN(this.#tokenExpiresAt))
            return;
        // A token never outlives the session: nothing to gain once it reaches the session's end.
        const sessionEnd = Date.parse(this.#session.expiresAt);
        if (!Number.isNaN(sessionEnd) && this.#tokenExpiresAt >= sessionEnd - 1000)
            return;
        const lifetime = this.#tokenExpiresAt - Date.now();
        const delay = lifetime > 5 * TOKEN_MARGIN_MS ? lifetime - TOKEN_MARGIN_MS : lifetime * 0.8;
        this.#tokenTimer = setTimeout(() => {
            this.refreshToken().catch((err) => {
                if (isEndedError(err)) {
                    this.#end("session_ended", "ended");
                    return;
                }
                clearTimeout(this.#tokenTimer);
                this.#tokenTimer = setTimeout(() => this.#scheduleTokenRefreshRetry(), 5000);
            });
        }, Math.min(MAX_TIMER_MS, Math.max(0, delay)));
    }
    #scheduleTokenRefreshRetry() {
        this.refreshToken().catch((err) => {
            if (isEndedError(err))
                this.#end("session_ended", "ended");
            else
                this.#tokenTimer = setTimeout(() => this.#scheduleTokenRefreshRetry(), 10_000);
        });
    }
    #onVisibility = () => {
        if (!pageVisible() || this.closed)
            return;
        if (this.#waitingForVisible) {
            this.#waitingForVisible = false;
            void this.#reconnect();
            return;
        }
        this.ping();
    };
    #onPageHide = () => {
        if (this.closed)
            return;
        void this.end({ keepalive: true }).catch(() => undefined);
    };
    #end(reason, status, fallback) {
        if (this.#ended)
            return;
        this.#ended = true;
        this.#teardown();
        this.emit("ended", fallback ? { reason, status, fallback } : { reason, status });
    }
    #teardown() {
        clearTimeout(this.#reconnectTimer);
        clearTimeout(this.#tokenTimer);
        clearTimeout(this.#helloTimer);
        clearTimeout(this.#catchupTimer);
        clearInterval(this.#heartbeatTimer);
        if (typeof document !== "undefined")
            document.removeEventListener("visibilitychange", this.#onVisibility);
        if (typeof window !== "undefined")
            window.removeEventListener("pagehide", this.#onPageHide);
        this.#phase = "idle";
        const ws = this.#ws;
        this.#ws = null;
        if (ws) {
            ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
            if (ws.readyState === 0 || ws.readyState === 1) {
                try {
                    ws.close(1000, "closed");
                }
                catch {
                    /* ignore */
                }
            }
        }
    }
}

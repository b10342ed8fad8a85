"""The editor socket: hello, numbered patches, ping; everything the machine reports, back.

Three things run per socket: this reader loop, a relay task turning pub/sub envelopes of the
session into frames, and the one lock that serialises sends between them. The editor's
position (`known`) is the last seq it is known to have; a gap in what the relay sees, or a
`resync` from the hub, is filled from the edit stream (or with a snapshot when the stream no
longer holds it).

Every frame the editor sends is activity (app.realtime.activity). When the session ends, by
whatever path, pool.edits.edit_log.announce_end marks it ended in Redis and publishes `ended`: the
relay sends `ended {reason, status}` and closes the socket with 4000, and append_patch.lua
refuses any patch that still arrives (`error session_ended`), so nothing is acked for a session
that is not live. A socket opened on an ended session is told the same way.

Store loss. Seqs mean something only within one epoch of the session's log (pool.edits.edit_log):
if Redis loses the log, the next access starts a new epoch. This socket learns it from the
append that found another epoch, from a relayed patch of another epoch, or from a resync (the
hub's reconnect after a Redis restart), and sends `welcome` again with the new epoch and head:
the editor, the source of truth after a reset, re-sends its files as patches of the new epoch.
A patch the editor numbered under the old epoch is refused (`stale_epoch`), never renumbered.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.websockets import WebSocket

from app.realtime.activity import ActivityRecorder
from app.realtime.edit_timings import EditTimings
from app.realtime.frames import EditorHello, EditorPatch, frame, parse_editor_frame
from app.realtime.guard import (
    CLOSE_POLICY,
    CLOSE_SESSION_ENDED,
    LOGGED_REFUSALS,
    Guard,
    SocketClosed,
    incoming,
    run_until_either_ends,
)
from app.realtime.hub import Delivery, Resync
from app.resources import Resources
from app.rollout.fallback import fallback_member
from app.session_tokens import InvalidSessionToken, verify_session_token
from pool.core import logs
from pool.edits.edit_log import (
    Appended,
    Change,
    Conflict,
    EditLog,
    Ended,
    EpochChanged,
    OverBudget,
    TooLarge,
    session_channel,
)
from pool.edits.envelopes import (
    AppliedEnvelope,
    BuildErrorEnvelope,
    EndedEnvelope,
    Envelope,
    ErrorEnvelope,
    IdleWarningEnvelope,
    LogEnvelope,
    PatchEnvelope,
    StatusEnvelope,
    fields_of,
)
from pool.services.fallbacks import START_FAILURES
from pool.services.metrics import SocketMeter
from sql import sessions, timelines
from sql.appetize import appetize_settings
from sql.errors import DataError
from sql.latency import LatencyHistogram
from sql.states import SessionStatus

log = logging.getLogger(__name__)

# The `fallback` member of an `ended` frame for this end (reason, status), or None.
FallbackFor = Callable[[str, str], Awaitable[dict[str, Any] | None]]


class EditorConnection:
    def __init__(
        self,
        websocket: WebSocket,
        edits: EditLog,
        session_id: str,
        activity: ActivityRecorder | None = None,
        user: str = "",
        timings: EditTimings | None = None,
        meter: SocketMeter | None = None,
        fallback_for: FallbackFor | None = None,
    ) -> None:
        self.websocket = websocket
        self.edits = edits
        self.session_id = session_id
        self.user = user  # whose edit-log budget this session's patches count against
        self.socket_id = uuid.uuid4().hex[:12]
        self.known = 0
        self.epoch = ""  # the epoch of the log `known` counts in; "" before the hello
        self.refused = 0  # patches refused on this socket (for the log's rate)
        self.activity = activity
        self.timings = timings  # ack and applied latency of this socket's patches
        self.meter = meter  # the process's metrics (the same latencies, refusals)
        self.fallback_for = fallback_for  # a session that never started: use Appetize
        self._send_lock = asyncio.Lock()

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def end(self, reason: str, status: str) -> None:
        """Tell the editor its session ended and close (4000: do not reconnect)."""
        fields: dict[str, Any] = {"reason": reason, "status": status}
        if self.fallback_for is not None:
            fallback = await self.fallback_for(reason, status)
            if fallback is not None:
                fields["fallback"] = fallback
        async with self._send_lock:
            await self.websocket.send_text(frame("ended", **fields))
            await self.websocket.close(code=CLOSE_SESSION_ENDED, reason="session ended")

    async def catch_up(self) -> None:
        patches = await self.edits.since(self.session_id, self.known)
        if patches is None:
            snapshot = await self.edits.snapshot(self.session_id)
            # `binary` only when there is one: a text-only session's frame is as it always was.
            binary = {"binary": snapshot.binary} if snapshot.binary else {}
            await self.send(
                frame(
                    "snapshot",
                    seq=snapshot.seq,
                    files=snapshot.files,
                    deleted=snapshot.deleted,
                    **binary,
                )
            )
            self.known = snapshot.seq
            return
        for patch in patches:
            await self.send(frame("patch", seq=patch.seq, changes=patch.changes))
            self.known = patch.seq

    async def resync(self) -> None:
        """Bring the editor up to date: in this epoch from the stream, or, when the log's
        epoch changed (Redis lost it), with a new `welcome` and the new epoch from its start."""
        epoch = await self.edits.epoch(self.session_id)
        if epoch != self.epoch:
            await self.welcome(epoch, known=0)
        else:
            await self.catch_up()

    async def welcome(self, epoch: str, known: int) -> None:
        """Send `welcome` for `epoch`, then what the editor lacks after seq `known`."""
        if self.epoch and epoch != self.epoch:
            log.warning(
                "session %s: its edit log was lost (epoch %s -> %s); the editor re-sends",
                self.session_id,
                self.epoch,
                epoch,
            )
        self.epoch = epoch
        head = await self.edits.head(self.session_id)
        state, detail = await self.edits.status(self.session_id)
        await self.send(
            frame(
                "welcome",
                sessionId=self.session_id,
                epoch=epoch,
                head=head,
                applied=await self.edits.applied(self.session_id),
                state=state,
                detail=detail,
            )
        )
        self.known = min(known, head)
        await self.catch_up()

    async def on_hello(self, hello: EditorHello) -> None:
        ended = await self.edits.ended(self.session_id)
        if ended is not None:
            await self.end(*ended)
            raise SocketClosed("the session ended")
        epoch = await self.edits.epoch(self.session_id)
        # A lastSeq counted in another epoch says nothing about this log: start from its start.
        same_log = hello.epoch is None or hello.epoch == epoch
        await self.welcome(epoch, known=hello.lastSeq if same_log else 0)

    async def on_patch(self, patch: EditorPatch) -> None:
        received = time.monotonic()
        if not self.epoch:
            # Seqs are numbered against a log whose epoch the welcome gives: none yet.
            await self.refuse(patch.seq, "hello_first", "send hello first")
            return
        if patch.epoch is not None and patch.epoch != self.epoch:
            # Numbered before the editor heard of the current epoch: its seq means nothing
            # here. The `welcome` this socket sent makes the editor re-send its content.
            await self.refuse(
                patch.seq,
                "stale_epoch",
                "the patch was numbered under an earlier epoch; follow the welcome",
                epoch=patch.epoch,
            )
            return
        changes = [Change(c.path, c.content, binary=c.encoding == "base64") for c in patch.changes]
        if self.timings is not None:
            # Before the append: the agent's `applied` may come back before the ack is sent.
            self.timings.started(patch.seq, received)
        outcome = await self.edits.append(
            self.session_id,
            patch.seq,
            changes,
            origin=self.socket_id,
            epoch=self.epoch,
            user=self.user,
        )
        if self.timings is not None and not isinstance(outcome, Appended):
            self.timings.dropped(patch.seq)
        match outcome:
            case Appended(seq=seq):
                self.known = max(self.known, seq)
                await self.send(frame("ack", seq=seq))
                self._acked(seq)
            case Conflict(head=head):
                await self.refuse(
                    patch.seq, "seq_conflict", f"the next seq is {head + 1}", head=head
                )
            case TooLarge():
                await self.refuse(patch.seq, "too_large", "the session's files exceed the cap")
            case OverBudget():
                await self.refuse(
                    patch.seq,
                    "over_budget",
                    "your live sessions' files exceed your budget; end one",
                )
            case EpochChanged(epoch=epoch):
                await self.welcome(epoch, known=0)
            case Ended(reason=reason):
                await self.refuse(
                    patch.seq,
                    "session_ended",
                    f"the session ended ({reason}); the patch was not applied",
                )
                ended = await self.edits.ended(self.session_id)
                await self.end(*(ended or (reason, SessionStatus.ENDED)))
                raise SocketClosed("the session ended")

    def _acked(self, seq: int) -> None:
        """The ack of `seq` sent: its latency to the session's summary and the metrics."""
        if self.timings is not None:
            ms = self.timings.acked(seq)
            if ms is not None and self.meter is not None:
                self.meter.edit_acked(ms / 1000)

    def _applied(self, seq: int) -> None:
        """Applied up to `seq` reported: this socket's patches' latencies, likewise."""
        if self.timings is not None:
            for ms in self.timings.applied(seq):
                if self.meter is not None:
                    self.meter.edit_applied(ms / 1000)

    async def refuse(self, seq: int, code: str, message: str, **fields: Any) -> None:
        """Answer a refused patch with `error` (nothing changed), and log it: the first few of
        the socket, then one line per hundred (a client may send 200 frames a second)."""
        self.refused += 1
        if self.meter is not None:
            self.meter.refused(code)
        if self.refused <= LOGGED_REFUSALS or self.refused % 100 == 0:
            log.info(
                "session %s: refused patch %d (%s), refusal #%d of this socket",
                self.session_id,
                seq,
                code,
                self.refused,
            )
        await self.send(frame("error", code=code, message=message, seq=seq, **fields))

    def wants(self, envelope: Envelope) -> bool:
        """The hub's filter: not this socket's own patches (their `ack` is its answer)."""
        return not (isinstance(envelope, PatchEnvelope) and envelope.origin == self.socket_id)

    async def relay(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            match delivery:
                case Resync() | PatchEnvelope() if not self.epoch:
                    continue  # before the hello: the welcome's catch-up will bring it
                case Resync():
                    await self.resync()
                case PatchEnvelope():
                    await self.relay_patch(delivery)
                case EndedEnvelope(reason=reason, status=status):
                    await self.end(reason, status)
                    return
                case IdleWarningEnvelope(secondsLeft=seconds_left):
                    if self.activity is not None:
                        self.activity.warned()
                    await self.send(frame(delivery.kind, secondsLeft=seconds_left))
                case AppliedEnvelope(seq=seq):
                    await self.send(frame(delivery.kind, **fields_of(delivery)))
                    self._applied(seq)
                case StatusEnvelope() | LogEnvelope() | BuildErrorEnvelope() | ErrorEnvelope():
                    # What the machine reported: the frame of the same type, same fields.
                    await self.send(frame(delivery.kind, **fields_of(delivery)))
                # assign and hydrate are the agent's (the machine channel): never heard here.

    async def relay_patch(self, patch: PatchEnvelope) -> None:
        """Another editor's patch, appended: sent on in order, or the gap filled first."""
        if patch.epoch is not None and patch.epoch != self.epoch:
            await self.resync()
            return
        if patch.origin == self.socket_id or patch.seq <= self.known:
            return
        if patch.seq > self.known + 1:
            await self.catch_up()
            return
        await self.send(frame("patch", seq=patch.seq, changes=patch.changes))
        self.known = patch.seq


def allowed_origin(origin: str | None, allowed: tuple[str, ...], dev_mode: bool) -> bool:
    """No Origin: not a browser, and the session token is the credential. A browser's Origin
    must be listed; in dev mode any localhost origin is fine."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    host = urlsplit(origin).hostname or ""
    return dev_mode and (host == "localhost" or host.endswith(".localhost") or host == "127.0.0.1")


async def editor_socket(websocket: WebSocket) -> None:
    res: Resources = websocket.app.state.resources
    try:
        session_id = uuid.UUID(websocket.path_params["session_id"])
        verify_session_token(
            res.token_secret, websocket.query_params.get("token", ""), session_id, time.time()
        )
    except (ValueError, InvalidSessionToken):
        await websocket.close(code=CLOSE_POLICY, reason="a valid session token is required")
        return
    if not allowed_origin(
        websocket.headers.get("origin"), res.settings.allowed_origins, res.settings.preview_dev_mode
    ):
        await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
        return
    async with res.db.connection() as conn:
        row = await sessions.get_session(conn, session_id)
    if row is None:
        await websocket.close(code=CLOSE_POLICY, reason="no such session")
        return
    await websocket.accept()
    # Whatever this socket logs names its session and machine (its token never: see logs).
    logs.session_id.set(str(session_id))
    logs.machine_id.set(row.machine_id)

    async def record() -> None:
        async with res.db.connection() as conn:
            await sessions.record_activity(conn, session_id)

    activity = ActivityRecorder(record, interval=res.settings.preview_activity_flush_seconds)

    async def add_latencies(ack: LatencyHistogram, applied: LatencyHistogram) -> None:
        async with res.db.connection() as conn:
            await timelines.add_edit_latency(conn, session_id, ack, applied)

    timings = EditTimings(add_latencies)
    meter = res.metrics.socket_meter("editor")

    async def fallback_for(reason: str, status: str) -> dict[str, Any] | None:
        # The worker records the fallback itself (pool.services.fallbacks); this only tells
        # the editor, with the settings its embed needs.
        if status != SessionStatus.FAILED or reason not in START_FAILURES:
            return None
        try:
            async with res.db.connection() as conn:
                settings = await appetize_settings(conn, row.project_id)
        except DataError as exc:  # the end is told anyway; the panel asks the backend route
            log.warning("no Appetize settings for the ended frame: %s", exc)
            settings = None
        return fallback_member(reason, settings)

    connection = EditorConnection(
        websocket,
        res.edits,
        str(session_id),
        activity,
        user=str(row.user_id),
        timings=timings,
        meter=meter,
        fallback_for=fallback_for,
    )
    if not row.status.is_live:
        # The token was good, so say why rather than refuse: a browser cannot read the reason
        # of a refused handshake, and the editor must not keep reconnecting.
        await connection.end(row.end_reason or row.status, row.status)
        return
    guard = Guard(websocket, idle_seconds=None, meter=meter)
    channel = session_channel(res.edits.prefix, str(session_id))
    meter.opened()
    try:
        async with res.hub.subscribe(channel, accept=connection.wants) as queue:
            await run_until_either_ends(
                _read_loop(guard, connection), connection.relay(queue), f"editor-{session_id}"
            )
    finally:
        meter.closed()
        await activity.aclose()
        await timings.aclose()


async def _read_loop(guard: Guard, connection: EditorConnection) -> None:
    async for message in incoming(guard, parse_editor_frame, connection.send):
        if connection.activity is not None:
            connection.activity.frame()
        if isinstance(message, EditorHello):
            await connection.on_hello(message)
        elif isinstance(message, EditorPatch):
            await connection.on_patch(message)
        else:
            await connection.send(frame("pong"))

"""The sandbox socket: the agent of one preview machine.

The agent connects while its machine is warm and unassigned; the socket listens on the
machine's channel. When the machine is leased, promote.lua (or claim_leased.lua) publishes
`assign` there; this instance then also listens on the session's channel and relays its
patches to the agent in order. What the agent missed comes from the edit stream; when that is
gone, or the machine is new to a session that already has files, the snapshot is pushed by the
`hydrate_machine` arq job (the heavy part stays off the socket's hot path).

Authentication: the machine token the provider gave the machine, checked against the SHA-256
kept in the machine's Redis record. It is checked again whenever the socket is to serve a new
session: a recycle gives the machine a new token, and a socket opened with the last one (by
whoever read it inside the machine during the last session) must not hear the next user's
session. It is closed instead (1008).

Epochs. What the agent applied counts in one epoch of the session's log (pool.edits.edit_log). When
Redis loses the log, a new epoch starts at seq 1: this socket learns it from a dropped
`applied` report, a relayed patch of another epoch, or a resync, and sends `assign` again with
the new epoch. The agent keeps its files and counts from 0 again; the editor re-sends its
files as the new epoch's first patches, which the agent applies over what it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import uuid
from typing import Any

from starlette.websockets import WebSocket

from app.realtime.frames import (
    AgentApplied,
    AgentBuildError,
    AgentHello,
    AgentLog,
    AgentRejected,
    AgentStats,
    AgentStatus,
    frame,
    parse_agent_frame,
)
from app.realtime.guard import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    Guard,
    SocketClosed,
    incoming,
    run_until_either_ends,
)
from app.realtime.hub import RESYNC, Delivery, Resync, offer
from app.resources import Resources
from pool.core import logs
from pool.core.errors import PoolUnavailable
from pool.edits.edit_log import (
    EditLog,
    EpochChanged,
    applied_outcome,
    machine_channel,
    session_channel,
)
from pool.edits.envelopes import (
    AssignEnvelope,
    BuildErrorEnvelope,
    Envelope,
    ErrorEnvelope,
    HydrateEnvelope,
    LogEnvelope,
    PatchEnvelope,
    StatusEnvelope,
)
from sql import timelines
from sql.errors import DataError
from sql.stages import Stage

log = logging.getLogger(__name__)

RELAYED_TO_AGENT = (AssignEnvelope, HydrateEnvelope, PatchEnvelope)


class AgentConnection:
    def __init__(
        self, websocket: WebSocket, res: Resources, machine_id: str, token_hash: str
    ) -> None:
        self.websocket = websocket
        self.res = res
        self.edits: EditLog = res.edits
        self.machine_id = machine_id
        self.token_hash = token_hash  # what this socket authenticated with
        self.session: str | None = None
        self.epoch = ""  # the epoch of the session's log that `sent` counts in
        self.sent = 0  # the last seq relayed to (or reported applied by) the agent
        self._send_lock = asyncio.Lock()
        self.queue: asyncio.Queue[Delivery] | None = None
        self._reported: asyncio.Future[Any] | None = None  # the last `applied` report queued
        self._closing: asyncio.Future[None] | None = None
        self._first_applied: set[str] = set()  # sessions whose first applied edit is recorded

    async def settle(self) -> None:
        """Await the close that a failed report started: it was begun from a done callback,
        which cannot await, and must not outlive the socket as a task nobody waits on."""
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def assign(
        self, session: str, agent_session: str | None, applied: int, agent_epoch: str | None
    ) -> bool:
        """Serve `session`: listen on its channel, tell the agent, and bring it up to date.
        `applied` counts in `agent_epoch` (None: an agent that named none).
        False (and the socket closed) when the machine's token changed since this socket
        authenticated."""
        if self.session != session:
            current = await self.res.inventory.token_hash(self.machine_id)
            if current is None or not hmac.compare_digest(current, self.token_hash):
                log.warning(
                    "closing a sandbox socket of %s: its token was revoked", self.machine_id
                )
                await self.websocket.close(code=CLOSE_POLICY, reason="machine token revoked")
                return False
            if self.session is not None and self.queue is not None:
                await self.res.hub.remove_channel(
                    self.queue, session_channel(self.edits.prefix, self.session)
                )
            self.session = session
            assert self.queue is not None
            await self.res.hub.add_channel(self.queue, session_channel(self.edits.prefix, session))
        self.epoch = await self.edits.epoch(session)
        # An agent that names no epoch (its state predates epochs) cannot say which log its
        # count belongs to: it is assigned the current one and counts from 0 again.
        if agent_session != session or agent_epoch != self.epoch:
            await self.send(frame("assign", session=session, epoch=self.epoch))
            applied = 0
        self.sent = applied
        await self.catch_up()
        return True

    async def resync(self) -> None:
        """Bring the agent up to date; if the log's epoch changed (Redis lost it), assign the
        session again under the new epoch first."""
        if self.session is None:
            return
        if await self.edits.epoch(self.session) != self.epoch:
            log.warning("machine %s: session %s's edit log was lost", self.machine_id, self.session)
            # What the agent applied counts in the epoch this socket knew, now gone.
            await self.assign(self.session, self.session, 0, self.epoch)
            return
        await self.catch_up()

    async def catch_up(self) -> None:
        if self.session is None:
            return
        patches = await self.edits.since(self.session, self.sent)
        if patches is None or (self.sent == 0 and patches and patches[0].seq != 1):
            await self.res.jobs.hydrate_machine(self.session, self.machine_id)
            return
        for patch in patches:
            await self.send(frame("patch", seq=patch.seq, changes=patch.changes))
            self.sent = patch.seq

    @staticmethod
    def wants(envelope: Envelope) -> bool:
        """The hub's filter: what the relay acts on. The session channel also carries what the
        agent itself reported (`applied`, `status`, logs), for the editors."""
        return isinstance(envelope, RELAYED_TO_AGENT)

    async def relay(self) -> None:
        assert self.queue is not None
        while True:
            delivery = await self.queue.get()
            match delivery:
                case AssignEnvelope(session=session):
                    if not await self.assign(session, None, 0, None):
                        return
                case HydrateEnvelope() if delivery.session == self.session:
                    await self.hydrate(delivery)
                case Resync():
                    await self.resync()
                case PatchEnvelope() if self.session is not None:
                    await self.relay_patch(delivery)

    async def hydrate(self, snapshot: HydrateEnvelope) -> None:
        """The session's whole file set (the hydrate job's), sent on as `hydrate`."""
        epoch = self.epoch if snapshot.epoch is None else snapshot.epoch
        binary = {"binary": snapshot.binary} if snapshot.binary else {}
        await self.send(
            frame(
                "hydrate",
                session=self.session,
                epoch=epoch,
                seq=snapshot.seq,
                files=snapshot.files,
                deleted=snapshot.deleted,
                **binary,
            )
        )
        self.epoch = epoch
        self.sent = max(self.sent, snapshot.seq)

    async def relay_patch(self, patch: PatchEnvelope) -> None:
        """A patch appended to the session: sent on in order, or the gap filled first."""
        if patch.epoch is not None and patch.epoch != self.epoch:
            await self.resync()
            return
        if patch.seq <= self.sent:
            return
        if patch.seq > self.sent + 1:
            await self.catch_up()
            return
        await self.send(frame("patch", seq=patch.seq, changes=patch.changes))
        self.sent = patch.seq

    async def on_frame(self, message: Any) -> None:
        if isinstance(message, AgentStats):
            # The machine's own figures: metrics only, whatever session it serves.
            self.res.machine_reports.record(self.machine_id, message)
            return
        if isinstance(message, AgentApplied):
            if self.session is None:
                return  # a warm machine's reports concern no session yet
            # Not awaited: the next frame is read while Redis takes the report. One `applied`
            # per patch, so waiting here would cost a round trip and a wake-up per patch.
            self._reported = self.edits.report_applied_soon(self.session, message.seq, self.epoch)
            self._reported.add_done_callback(self._after_report)
            if message.seq > 0 and self.session not in self._first_applied:
                await self._record_first_applied(self.session, message.seq)
            return
        if self._reported is not None and not self._reported.done():
            # What the editors hear keeps the agent's order: its last `applied` first (and a
            # hello compares its appliedSeq with a mark that includes it).
            await asyncio.wait([self._reported])
        if isinstance(message, AgentHello):
            await self.on_hello(message)
            return
        if self.session is None:
            return  # a warm machine's status and logs concern no session yet
        channel = session_channel(self.edits.prefix, self.session)
        if isinstance(message, AgentStatus):
            await self.edits.record_status(self.session, message.state, message.detail)
            await self.edits.publish(
                channel, StatusEnvelope(state=message.state, detail=message.detail)
            )
        elif isinstance(message, AgentBuildError | AgentLog | AgentRejected):
            await self.edits.publish(channel, _for_editors(message))

    async def _record_first_applied(self, session: str, seq: int) -> None:
        """The session's `first_edit_applied` stage: once per session on this socket (the
        statement keeps the first of every socket's). A store outage costs the stage, never
        the socket."""
        self._first_applied.add(session)
        try:
            async with self.res.db.connection() as conn:
                await timelines.record_stage(
                    conn,
                    uuid.UUID(session),
                    Stage.FIRST_EDIT_APPLIED,
                    {"machine": self.machine_id, "seq": seq},
                )
        except (DataError, ValueError) as exc:
            log.warning("session %s: first applied edit not recorded: %s", session, exc)

    def _after_report(self, report: asyncio.Future[Any]) -> None:
        """A report Redis did not take is not retried here: the socket is closed instead
        (1011), the agent reconnects and says hello with what it applied, and on_hello
        reports that. Editors hear every seq the machine applied, late rather than never.
        A report dropped because the log's epoch changed (Redis lost it) starts a resync."""
        if report.cancelled():
            return
        if (exc := report.exception()) is None:
            if (
                isinstance(applied_outcome(report.result()), EpochChanged)
                and self.queue is not None
            ):
                offer(self.queue, RESYNC)
            return
        log.warning("an applied report of %s was not recorded: %s", self.machine_id, exc)
        if self._closing is None:
            self._closing = asyncio.ensure_future(
                self.websocket.close(code=CLOSE_INTERNAL, reason="applied report failed")
            )

    async def on_hello(self, hello: AgentHello) -> None:
        record = await self.res.inventory.machine(self.machine_id)
        if (
            record is None
            or record.session_id is None
            or record.state.value
            not in (
                "pending",
                "leased",
            )
        ):
            return  # warm: wait for `assign` on the machine channel
        if not await self.assign(record.session_id, hello.session, hello.appliedSeq, hello.epoch):
            raise SocketClosed("machine token revoked")
        same_log = hello.session == record.session_id and hello.epoch == self.epoch
        if not same_log or hello.appliedSeq == 0:
            return  # nothing applied in this session's current epoch
        # What the agent applied while no report got through (a lost socket, a failed report).
        # Only a gain is reported: editors hear each seq applied once. The script clamps it
        # to the head: an agent's count is not trusted beyond what was appended.
        if hello.appliedSeq > await self.edits.applied(record.session_id):
            await self.edits.report_applied(record.session_id, hello.appliedSeq, self.epoch)


def _for_editors(message: AgentBuildError | AgentLog | AgentRejected) -> Envelope:
    """What the agent reported, relayed to the editors as it is; a refused patch reaches them
    as `error`."""
    fields = message.model_dump(exclude={"v", "type"})
    if isinstance(message, AgentRejected):
        return ErrorEnvelope(**fields)
    if isinstance(message, AgentLog):
        return LogEnvelope(**fields)
    return BuildErrorEnvelope(**fields)


def token_matches(token: str, expected_hash: str | None) -> bool:
    if not expected_hash or not token:
        return False
    digest = hashlib.sha256(token.encode()).hexdigest()
    return hmac.compare_digest(digest, expected_hash)


async def sandbox_socket(websocket: WebSocket) -> None:
    res: Resources = websocket.app.state.resources
    machine_id = websocket.headers.get("x-machine-id", "")[:64]
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    record = await res.inventory.machine(machine_id) if machine_id else None
    expected = await res.inventory.token_hash(machine_id) if record is not None else None
    if scheme.lower() != "bearer" or not token_matches(token.strip(), expected):
        await websocket.close(code=CLOSE_POLICY, reason="a valid machine token is required")
        return
    await websocket.accept()
    logs.machine_id.set(machine_id)  # whatever this socket logs names its machine
    assert expected is not None  # token_matches refuses a machine without a token
    connection = AgentConnection(websocket, res, machine_id, expected)
    meter = res.metrics.socket_meter("sandbox")
    guard = Guard(websocket, rate=500, burst=1000, meter=meter)
    meter.opened()
    res.machine_reports.opened(machine_id)
    channel = machine_channel(res.edits.prefix, machine_id)
    try:
        async with res.hub.subscribe(channel, accept=connection.wants) as queue:
            connection.queue = queue
            try:
                await run_until_either_ends(
                    _read_loop(guard, connection), connection.relay(), f"sandbox-{machine_id}"
                )
            finally:
                if connection.session is not None:
                    await res.hub.remove_channel(
                        queue, session_channel(res.edits.prefix, connection.session)
                    )
    finally:
        meter.closed()
        res.machine_reports.closed(machine_id)
        await connection.settle()
        # However the socket ended (its relay may have raised): once its listener is gone.
        if connection.session is not None:
            await _tell_editors_the_agent_left(res.edits, connection.session, machine_id)


async def _tell_editors_the_agent_left(edits: EditLog, session: str, machine_id: str) -> None:
    """The documented `offline` status, once this socket (and its machine-channel listener)
    is gone. Best effort: a store that is down cannot be told, and the agent's next connection
    restates the truth anyway."""
    try:
        if await edits.agent_gone(session, machine_id, "the preview machine disconnected"):
            log.info("machine %s: agent gone; told session %s offline", machine_id, session)
    except PoolUnavailable as exc:
        log.warning("machine %s: agent gone, editors not told (%s)", machine_id, exc)


async def _read_loop(guard: Guard, connection: AgentConnection) -> None:
    async for message in incoming(guard, parse_agent_frame, connection.send):
        if message.type == "ping":
            await connection.send(frame("pong"))
            continue
        await connection.on_frame(message)

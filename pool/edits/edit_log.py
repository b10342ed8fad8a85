"""A session's edits in Redis: the bounded stream that orders them and is the resume point, the
snapshot of every file at the stream's head, and what the machine has applied.

Appending is one Lua script: the sequence check, the stream entry (id "{seq}-0", so Redis itself
refuses a duplicate id), the snapshot update and the publish to the session channel all happen
together or not at all. A resend of an appended patch (same seq, same digest) is recognised and
acknowledged again, so editors can resend after a lost socket without a second append.

The snapshot hash holds one opaque string per path: a text file's content, TOMBSTONE for a
deleted file, or BINARY_MARK followed by a binary file's base64 (no text holds NUL, which the
gateway refuses, so neither can be mistaken for a file's text). Its sizes count these strings as
stored: a binary file weighs its base64 text, 4/3 of its bytes, against the caps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from pool.core.errors import PoolUnavailable
from pool.edits.envelopes import (
    EndedEnvelope,
    Envelope,
    HydrateEnvelope,
    IdleWarningEnvelope,
    PatchEnvelope,
    encode_envelope,
)
from pool.edits.script_batcher import BatcherClosed, ScriptBatcher
from pool.store.keys import DEFAULT_PREFIX, Keys
from pool.store.redis_errors import resolved, translated_redis_errors
from pool.store.scripts import Scripts

STREAM_MAXLEN = 1000
MAX_STREAM_BYTES = 16 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
MAX_SNAPSHOT_FILES = 2000
USER_BUDGET_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EditLogLimits:
    """What one session's edits, and all of one user's sessions, may hold in Redis. The stream
    is trimmed (oldest first) to its bounds; the snapshot and the user's budget refuse."""

    stream_entries: int = STREAM_MAXLEN
    stream_bytes: int = MAX_STREAM_BYTES
    snapshot_bytes: int = MAX_SNAPSHOT_BYTES
    snapshot_files: int = MAX_SNAPSHOT_FILES
    user_budget_bytes: int = USER_BUDGET_BYTES


@dataclass(frozen=True)
class Change:
    path: str
    content: str | None  # None: delete
    binary: bool = False  # content is the file's bytes in base64

    def as_json(self) -> dict[str, Any]:
        if self.content is None:
            return {"path": self.path, "delete": True}
        if self.binary:
            return {"path": self.path, "content": self.content, "encoding": "base64"}
        return {"path": self.path, "content": self.content}


@dataclass(frozen=True)
class Appended:
    seq: int
    duplicate: bool


@dataclass(frozen=True)
class Conflict:
    head: int


@dataclass(frozen=True)
class TooLarge:
    bytes: int


@dataclass(frozen=True)
class OverBudget:
    """The user's live sessions would hold more than their budget: refused, nothing changed."""

    bytes: int


@dataclass(frozen=True)
class EpochChanged:
    """The session's log is not the one the patch was numbered against: Redis lost it (a
    restart without persistence, a failover, a flush) and a new one began. Nothing was
    appended; the editor must take the new epoch and re-send its files."""

    epoch: str


@dataclass(frozen=True)
class Ended:
    """The session ended (its end was announced): the patch was refused, not appended."""

    reason: str


AppendOutcome = Appended | Conflict | TooLarge | OverBudget | Ended | EpochChanged

# How long a session's `ended` mark outlives its end: long enough for every socket that was
# open, or reconnects, to hear it; the stream and snapshot expire on their own.
ENDED_MARK_SECONDS = 86_400


@dataclass(frozen=True)
class Patch:
    seq: int
    changes: list[dict[str, Any]]


# How append_patch.lua stores a deletion and a binary file in the snapshot hash.
TOMBSTONE = "\x00"
BINARY_MARK = "\x00base64:"


@dataclass(frozen=True)
class Snapshot:
    """The session's files at `seq`: the template's, overlaid with `files`, minus `deleted`.
    The `files` named in `binary` hold base64 (the wire's `encoding: "base64"`)."""

    seq: int
    files: dict[str, str]
    deleted: list[str]
    epoch: str = ""
    binary: list[str] = field(default_factory=list)


# The session's epoch, started if the log has none (new, or lost with Redis).
# KEYS: snapmeta:{session}. ARGV: fresh_epoch. Returns the epoch.
_EPOCH = """
local meta = KEYS[1]
if redis.call('HSETNX', meta, 'epoch', ARGV[1]) == 1 then
  redis.call('EXPIRE', meta, 604800)
end
return redis.call('HGET', meta, 'epoch')
"""

# The machine's `applied` report, in one round trip: keep the highest seq (never backwards,
# never past the head: an agent's word is not trusted beyond what was appended) and tell the
# session's listeners, unless the report was numbered under another epoch than the log's (it
# then means nothing here: returns the log's epoch, or '' when the log has none).
# KEYS: snapmeta:{session}.
# ARGV: seq, epoch, envelope_json with the seq as the last field's value, ch:session:{session}.
_REPORT_APPLIED = """
local meta = KEYS[1]
local ended = redis.call('HGET', meta, 'ended')
if ended then
  return {'ended', ended}
end
local epoch = redis.call('HGET', meta, 'epoch')
if epoch ~= ARGV[2] then
  return {'epoch', epoch or ''}
end
local seq = math.min(tonumber(ARGV[1]), tonumber(redis.call('HGET', meta, 'head') or '0'))
local current = tonumber(redis.call('HGET', meta, 'applied') or '0')
if current < seq then
  redis.call('HSET', meta, 'applied', seq)
end
if seq > 0 then
  redis.call('PUBLISH', ARGV[4], ARGV[3] .. seq .. '}')
end
return {'ok', seq}
"""


AppliedOutcome = int | EpochChanged | Ended  # the seq recorded (clamped to the head), or why not


def applied_outcome(reply: Any) -> AppliedOutcome:
    """The `applied` script's reply, decoded."""
    match reply:
        case ["ok", seq]:
            return int(seq)
        case ["epoch", current]:
            return EpochChanged(str(current))
        case ["ended", reason]:
            return Ended(str(reason))
    raise AssertionError(f"unexpected applied result {reply!r}")


# An agent's socket closed: unless another socket of the machine is listening (the agent
# already reconnected, here or to another web process) or the session ended, its editors hear
# `status offline`. KEYS: snapmeta:{session}. ARGV: ch:machine:{machine}, ch:session:{session},
# detail. Returns 1 when it was published.
_AGENT_GONE = """
local meta = KEYS[1]
if redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 0 then return 0 end
if redis.call('EXISTS', meta) == 0 or redis.call('HEXISTS', meta, 'ended') == 1 then return 0 end
redis.call('HSET', meta, 'status', 'offline', 'status_detail', ARGV[3])
redis.call('PUBLISH', ARGV[2],
           cjson.encode({kind = 'status', state = 'offline', detail = ARGV[3]}))
return 1
"""

# The report's envelope without its seq, which the script appends once clamped to the head.
_APPLIED_ENVELOPE_HEAD = '{"kind":"applied","seq":'


def new_epoch() -> str:
    return secrets.token_hex(8)


# The gateway (app/realtime) names the channels it listens on with these.
def session_channel(prefix: str, session_id: str) -> str:
    return Keys(prefix).session_channel(session_id)


def machine_channel(prefix: str, machine_id: str) -> str:
    return Keys(prefix).machine_channel(machine_id)


class EditLog:
    """`batcher`: the web process passes its ScriptBatcher, so that the two calls of every
    patch (append, applied report) share pipelines with the other sockets' calls. Without it
    (the worker, tests) each call is sent on its own."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        batcher: ScriptBatcher | None = None,
        limits: EditLogLimits | None = None,
    ) -> None:
        self._redis = redis
        scripts = Scripts(redis)
        self._append_patch = scripts.script("append_patch")
        self._report_applied = redis.register_script(_REPORT_APPLIED)
        self._epoch = redis.register_script(_EPOCH)
        self._agent_gone = redis.register_script(_AGENT_GONE)
        self._batcher = batcher
        self.keys = Keys(prefix)
        self.limits = limits or EditLogLimits()

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    async def _run_script(self, script: AsyncScript, keys: Sequence[str], *args: str | int) -> Any:
        async with translated_redis_errors():
            if self._batcher is not None:
                return await self._batcher.run(script, keys, *args)
            return await script(keys=list(keys), args=list(args))

    async def append(
        self,
        session_id: str,
        seq: int,
        changes: list[Change],
        *,
        origin: str = "",
        epoch: str = "",
        user: str = "",
    ) -> AppendOutcome:
        """Append patch `seq` (it must be head + 1) and publish it to the session.
        `origin`: the socket that sent it (it hears its `ack`, not the patch);
        `epoch`: the log the seq was numbered against ("" takes whichever is current);
        `user`: whose budget the session's edits count against ("" for none)."""
        as_json = tuple(c.as_json() for c in changes)
        changes_json = json.dumps(as_json, separators=(",", ":"))
        envelope = PatchEnvelope(epoch=epoch or None, seq=seq, changes=as_json, origin=origin)
        digest = hashlib.sha256(changes_json.encode()).hexdigest()
        limits, keys = self.limits, self.keys
        log_keys = [
            keys.edits(session_id),
            keys.snapshot(session_id),
            keys.snapshot_meta(session_id),
        ]
        result = await self._run_script(
            self._append_patch,
            [*log_keys, keys.edit_bytes(user)] if user else log_keys,
            keys.prefix,
            session_id,
            seq,
            changes_json,
            digest,
            limits.stream_entries,
            limits.snapshot_bytes,
            limits.snapshot_files,
            encode_envelope(envelope),
            epoch,
            new_epoch(),
            limits.stream_bytes,
            user,
            limits.user_budget_bytes,
            keys.session_channel(session_id),
        )
        match result:
            case ["ok", appended]:
                return Appended(int(appended), duplicate=False)
            case ["dup", appended]:
                return Appended(int(appended), duplicate=True)
            case ["conflict", head]:
                return Conflict(int(head))
            case ["too_large", size]:
                return TooLarge(int(size))
            case ["over_budget", size]:
                return OverBudget(int(size))
            case ["ended", reason]:
                return Ended(str(reason))
            case ["epoch", current]:
                return EpochChanged(str(current))
        raise AssertionError(f"unexpected append result {result!r}")

    async def epoch(self, session_id: str) -> str:
        """The identity of the session's log; a new one if it has none (new, or lost with
        Redis). Seqs, heads and applied marks mean something only within one epoch."""
        value = await self._run_script(
            self._epoch, [self.keys.snapshot_meta(session_id)], new_epoch()
        )
        return str(value)

    async def head(self, session_id: str) -> int:
        async with translated_redis_errors():
            value = await resolved(self._redis.hget(self.keys.snapshot_meta(session_id), "head"))
        return int(value or 0)

    async def since(self, session_id: str, after_seq: int, limit: int = 500) -> list[Patch] | None:
        """Patches after `after_seq`, in order; None when some of them are no longer in the
        stream (trimmed), so the caller must send a snapshot instead."""
        head = await self.head(session_id)
        if after_seq >= head:
            return []
        async with translated_redis_errors():
            entries = await self._redis.xrange(
                self.keys.edits(session_id), f"{after_seq + 1}-0", "+", count=limit
            )
        patches = [
            Patch(int(str(entry_id).split("-")[0]), json.loads(fields["changes"]))
            for entry_id, fields in entries
        ]
        if not patches or patches[0].seq != after_seq + 1:
            return None
        return patches

    async def snapshot(self, session_id: str) -> Snapshot:
        async with translated_redis_errors(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.keys.snapshot_meta(session_id), ["head", "epoch"])
            pipe.hgetall(self.keys.snapshot(session_id))
            (head, epoch), stored = await pipe.execute()
        return snapshot_of(int(head or 0), stored, str(epoch or ""))

    async def report_applied(self, session_id: str, seq: int, epoch: str) -> AppliedOutcome:
        """Keep the highest seq the machine acknowledged (never backwards, never past the
        head) and publish {"kind": "applied", "seq"} to the session, atomically and in one
        round trip (the agent reports every patch: this is on the hot path). A report
        numbered under another `epoch` than the log's is dropped (EpochChanged)."""
        result = await self._run_script(
            self._report_applied, *self._applied_call(session_id, seq, epoch)
        )
        return applied_outcome(result)

    def report_applied_soon(self, session_id: str, seq: int, epoch: str) -> asyncio.Future[Any]:
        """report_applied, queued on the batcher without waiting for Redis's reply: the
        agent's socket goes on reading while the report is sent. Reports queued by one caller
        are sent in order. The future holds the script's raw reply (see `applied_outcome`) or
        the redis-py error if the report failed."""
        if self._batcher is None:
            raise RuntimeError("report_applied_soon needs the web process's ScriptBatcher")
        try:
            return self._batcher.submit(
                self._report_applied, *self._applied_call(session_id, seq, epoch)
            )
        except BatcherClosed as exc:
            raise PoolUnavailable(f"Redis: {exc}") from exc

    def _applied_call(
        self, session_id: str, seq: int, epoch: str
    ) -> tuple[list[str], int, str, str, str]:
        """The keys and arguments of the `applied` script."""
        return (
            [self.keys.snapshot_meta(session_id)],
            seq,
            epoch,
            _APPLIED_ENVELOPE_HEAD,
            self.keys.session_channel(session_id),
        )

    async def applied(self, session_id: str) -> int:
        async with translated_redis_errors():
            value = await resolved(self._redis.hget(self.keys.snapshot_meta(session_id), "applied"))
        return int(value or 0)

    async def record_status(self, session_id: str, state: str, detail: str) -> None:
        async with translated_redis_errors():
            await resolved(
                self._redis.hset(
                    self.keys.snapshot_meta(session_id),
                    mapping={"status": state, "status_detail": detail},
                )
            )

    async def agent_gone(self, session_id: str, machine_id: str, detail: str) -> bool:
        """The machine's agent socket closed: tell the session's editors it is offline, unless
        the agent is already back (any socket listening on the machine's channel) or the
        session ended. True when they were told."""
        result = await self._run_script(
            self._agent_gone,
            [self.keys.snapshot_meta(session_id)],
            self.keys.machine_channel(machine_id),
            self.keys.session_channel(session_id),
            detail,
        )
        return int(result) == 1

    async def status(self, session_id: str) -> tuple[str, str]:
        async with translated_redis_errors():
            state, detail = await resolved(
                self._redis.hmget(self.keys.snapshot_meta(session_id), ["status", "status_detail"])
            )
        return (state or "offline", detail or "")

    async def publish(self, channel: str, envelope: Envelope) -> None:
        async with translated_redis_errors():
            await self._redis.publish(channel, encode_envelope(envelope))

    async def ended(self, session_id: str) -> tuple[str, str] | None:
        """(reason, status) once the session's end was announced; None while it is live."""
        async with translated_redis_errors():
            reason, status = await resolved(
                self._redis.hmget(self.keys.snapshot_meta(session_id), ["ended", "ended_status"])
            )
        return None if reason is None else (str(reason), str(status or "ended"))


# Mark a session ended, drop its files and give back its share of the user's budget, and tell
# its sockets, atomically. KEYS: snapmeta:{session}, edits:{session}, snap:{session}.
# ARGV: prefix, session, reason, status, mark_seconds, envelope_json, ch:session:{session}.
# The prefix: the user's budget (editbytes:{user}) is named by a field of the log.
# Returns {head, the snapshot hash as HGETALL gives it} as they were before the end.
_ANNOUNCE_END = """
local meta, stream, snap = KEYS[1], KEYS[2], KEYS[3]
local p, session = ARGV[1], ARGV[2]
local user = redis.call('HGET', meta, 'user')
if user then
  redis.call('HDEL', p .. 'editbytes:' .. user, session)
end
local head = redis.call('HGET', meta, 'head') or '0'
local files = redis.call('HGETALL', snap)
redis.call('DEL', stream, snap)
redis.call('HSET', meta, 'ended', ARGV[3], 'ended_status', ARGV[4])
redis.call('EXPIRE', meta, tonumber(ARGV[5]))
redis.call('PUBLISH', ARGV[7], ARGV[6])
return {head, files}
"""


@dataclass(frozen=True)
class EndedLog:
    """What a session's log held when its end was announced: the snapshot hash's values
    verbatim (contents, tombstones, whatever a binary file is stored as), at `seq`. Empty when
    the session never had files, or its end was announced before."""

    seq: int
    values: dict[str, str]


async def announce_end(
    redis: Redis, session_id: str, reason: str, status: str, *, prefix: str = DEFAULT_PREFIX
) -> EndedLog:
    """Mark the session ended for the gateway and tell its sockets, in one script: from here on
    append_patch.lua refuses every patch of it (nothing is acked for a session that is not
    live), and every editor socket hears `ended` and closes. Its stream and snapshot are deleted
    at once (nothing reads them after the end) and its bytes leave the user's budget; the small
    `ended` mark stays for ENDED_MARK_SECONDS. Called right after Postgres recorded the end, by
    every path that ends a session (pool.services.lifecycle), which keeps the files this returns
    (taken in the same script, so they are exactly what was acked)."""
    envelope = encode_envelope(EndedEnvelope(reason=reason, status=status))
    keys = Keys(prefix)
    async with translated_redis_errors():
        head, flat = await redis.register_script(_ANNOUNCE_END)(
            keys=[
                keys.snapshot_meta(session_id),
                keys.edits(session_id),
                keys.snapshot(session_id),
            ],
            args=[
                prefix,
                session_id,
                reason,
                status,
                ENDED_MARK_SECONDS,
                envelope,
                keys.session_channel(session_id),
            ],
        )
    return EndedLog(int(head), dict(zip(flat[::2], flat[1::2], strict=True)))


async def end_unannounced(redis: Redis, session_id: str, *, prefix: str = DEFAULT_PREFIX) -> bool:
    """The session has an edit log in Redis that does not know it ended (the end's announce did
    not get through): true. Nothing to announce to a session that never had a log."""
    meta = Keys(prefix).snapshot_meta(session_id)
    async with translated_redis_errors(), redis.pipeline(transaction=False) as pipe:
        pipe.exists(meta)
        pipe.hexists(meta, "ended")
        exists, ended = await pipe.execute()
    return bool(exists) and not ended


async def announce_idle_warning(
    redis: Redis, session_id: str, seconds_left: int, *, prefix: str = DEFAULT_PREFIX
) -> None:
    """Tell the session's editors it ends for inactivity in `seconds_left` unless a frame (or a
    heartbeat) arrives. Pub/sub only: an editor that is not connected has nobody to warn."""
    envelope = encode_envelope(IdleWarningEnvelope(secondsLeft=seconds_left))
    async with translated_redis_errors():
        await redis.publish(Keys(prefix).session_channel(session_id), envelope)


def snapshot_of(seq: int, stored: dict[str, str], epoch: str = "") -> Snapshot:
    """The snapshot hash's values (as append_patch.lua stores them) as files, deletions and
    which files are binary."""
    files: dict[str, str] = {}
    deleted: list[str] = []
    binary: list[str] = []
    for path, value in stored.items():
        if value == TOMBSTONE:
            deleted.append(path)
        elif value.startswith(BINARY_MARK):
            files[path] = value.removeprefix(BINARY_MARK)
            binary.append(path)
        else:
            files[path] = value
    return Snapshot(seq, files, sorted(deleted), epoch, sorted(binary))


async def push_snapshot(edits: EditLog, session_id: str, machine_id: str) -> int:
    """Publish the session's full file set to the machine's channel, where the gateway instance
    holding the machine's agent socket relays it as `hydrate`. Returns the snapshot's seq."""
    await edits.epoch(session_id)  # a log lost with Redis starts again under a new epoch
    snapshot = await edits.snapshot(session_id)
    await edits.publish(
        edits.keys.machine_channel(machine_id),
        HydrateEnvelope(
            session=session_id,
            epoch=snapshot.epoch,
            seq=snapshot.seq,
            files=snapshot.files,
            deleted=tuple(snapshot.deleted),
            binary=tuple(snapshot.binary),
        ),
    )
    return snapshot.seq

"""A session's edits in Redis: the bounded stream that orders them and is the resume point, the
snapshot of every file at the stream's head, and what the machine has applied.

Appending is one Lua script: the sequence check, the stream entry (id "{seq}-0", so Redis itself
refuses a duplicate id), the snapshot update and the publish to the session channel all happen
together or not at all. A resend of an appended patch (same seq, same digest) is recognised and
acknowledged again, so editors can resend after a lost socket without a second append.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from pool.errors import PoolUnavailable
from pool.leasing import DEFAULT_PREFIX
from pool.redis_errors import resolved, translated_redis_errors
from pool.script_batcher import BatcherClosed, ScriptBatcher
from pool.scripts import Scripts

STREAM_MAXLEN = 1000
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
MAX_SNAPSHOT_FILES = 2000


@dataclass(frozen=True)
class Change:
    path: str
    content: str | None  # None: delete

    def as_json(self) -> dict[str, Any]:
        if self.content is None:
            return {"path": self.path, "delete": True}
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
class Ended:
    """The session ended (its end was announced): the patch was refused, not appended."""

    reason: str


AppendOutcome = Appended | Conflict | TooLarge | Ended

# How long a session's `ended` mark outlives its end: long enough for every socket that was
# open, or reconnects, to hear it; the stream and snapshot expire on their own.
ENDED_MARK_SECONDS = 86_400


@dataclass(frozen=True)
class Patch:
    seq: int
    changes: list[dict[str, Any]]


TOMBSTONE = "\x00"


@dataclass(frozen=True)
class Snapshot:
    """The session's files at `seq`: the template's, overlaid with `files`, minus `deleted`."""

    seq: int
    files: dict[str, str]
    deleted: list[str]


# The machine's `applied` report, in one round trip: keep the highest seq (never backwards) and
# tell the session's listeners. ARGV: prefix, session, seq, envelope_json.
_REPORT_APPLIED = """
local meta = ARGV[1] .. 'snapmeta:' .. ARGV[2]
local current = redis.call('HGET', meta, 'applied')
if not current or tonumber(current) < tonumber(ARGV[3]) then
  redis.call('HSET', meta, 'applied', ARGV[3])
end
redis.call('PUBLISH', ARGV[1] .. 'ch:session:' .. ARGV[2], ARGV[4])
return 1
"""


def _applied_envelope(seq: int) -> str:
    return json.dumps({"kind": "applied", "seq": seq}, separators=(",", ":"))


def session_meta_key(prefix: str, session_id: str) -> str:
    return f"{prefix}snapmeta:{session_id}"


def session_channel(prefix: str, session_id: str) -> str:
    return f"{prefix}ch:session:{session_id}"


def machine_channel(prefix: str, machine_id: str) -> str:
    return f"{prefix}ch:machine:{machine_id}"


class EditLog:
    """`batcher`: the web process passes its ScriptBatcher, so that the two calls of every
    patch (append, applied report) share pipelines with the other sockets' calls. Without it
    (the worker, tests) each call is sent on its own."""

    def __init__(
        self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, batcher: ScriptBatcher | None = None
    ) -> None:
        self._redis = redis
        scripts = Scripts(redis)
        self._append_patch = scripts.script("append_patch")
        self._report_applied = redis.register_script(_REPORT_APPLIED)
        self._batcher = batcher
        self.prefix = prefix

    async def _run_script(self, script: AsyncScript, *args: str | int) -> Any:
        async with translated_redis_errors():
            if self._batcher is not None:
                return await self._batcher.run(script, *args)
            return await script(keys=[], args=list(args))

    async def append(
        self, session_id: str, seq: int, changes: list[Change], envelope: dict[str, Any]
    ) -> AppendOutcome:
        """Append patch `seq` (it must be head + 1) and publish `envelope` to the session."""
        changes_json = json.dumps([c.as_json() for c in changes], separators=(",", ":"))
        digest = hashlib.sha256(changes_json.encode()).hexdigest()
        result = await self._run_script(
            self._append_patch,
            self.prefix,
            session_id,
            seq,
            changes_json,
            digest,
            STREAM_MAXLEN,
            MAX_SNAPSHOT_BYTES,
            MAX_SNAPSHOT_FILES,
            json.dumps(envelope, separators=(",", ":")),
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
            case ["ended", reason]:
                return Ended(str(reason))
        raise AssertionError(f"unexpected append result {result!r}")

    async def head(self, session_id: str) -> int:
        async with translated_redis_errors():
            value = await resolved(self._redis.hget(f"{self.prefix}snapmeta:{session_id}", "head"))
        return int(value or 0)

    async def since(self, session_id: str, after_seq: int, limit: int = 500) -> list[Patch] | None:
        """Patches after `after_seq`, in order; None when some of them are no longer in the
        stream (trimmed), so the caller must send a snapshot instead."""
        head = await self.head(session_id)
        if after_seq >= head:
            return []
        async with translated_redis_errors():
            entries = await self._redis.xrange(
                f"{self.prefix}edits:{session_id}", f"{after_seq + 1}-0", "+", count=limit
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
            pipe.hget(f"{self.prefix}snapmeta:{session_id}", "head")
            pipe.hgetall(f"{self.prefix}snap:{session_id}")
            head, stored = await pipe.execute()
        files = {path: content for path, content in stored.items() if content != TOMBSTONE}
        deleted = sorted(path for path, content in stored.items() if content == TOMBSTONE)
        return Snapshot(int(head or 0), files, deleted)

    async def report_applied(self, session_id: str, seq: int) -> None:
        """Keep the highest seq the machine acknowledged (never backwards) and publish
        {"kind": "applied", "seq"} to the session, atomically and
        in one round trip (the agent reports every patch: this is on the hot path)."""
        envelope = _applied_envelope(seq)
        await self._run_script(self._report_applied, self.prefix, session_id, seq, envelope)

    def report_applied_soon(self, session_id: str, seq: int) -> asyncio.Future[Any]:
        """report_applied, queued on the batcher without waiting for Redis's reply: the
        agent's socket goes on reading while the report is sent. Reports queued by one caller
        are sent in order. The future holds the redis-py error if the report failed."""
        if self._batcher is None:
            raise RuntimeError("report_applied_soon needs the web process's ScriptBatcher")
        try:
            return self._batcher.submit(
                self._report_applied, self.prefix, session_id, seq, _applied_envelope(seq)
            )
        except BatcherClosed as exc:
            raise PoolUnavailable(f"Redis: {exc}") from exc

    async def applied(self, session_id: str) -> int:
        async with translated_redis_errors():
            value = await resolved(
                self._redis.hget(f"{self.prefix}snapmeta:{session_id}", "applied")
            )
        return int(value or 0)

    async def record_status(self, session_id: str, state: str, detail: str) -> None:
        async with translated_redis_errors():
            await resolved(
                self._redis.hset(
                    f"{self.prefix}snapmeta:{session_id}",
                    mapping={"status": state, "status_detail": detail},
                )
            )

    async def status(self, session_id: str) -> tuple[str, str]:
        async with translated_redis_errors():
            state, detail = await resolved(
                self._redis.hmget(
                    f"{self.prefix}snapmeta:{session_id}", ["status", "status_detail"]
                )
            )
        return (state or "offline", detail or "")

    async def publish(self, channel: str, envelope: dict[str, Any]) -> None:
        async with translated_redis_errors():
            await self._redis.publish(channel, json.dumps(envelope, separators=(",", ":")))

    async def ended(self, session_id: str) -> tuple[str, str] | None:
        """(reason, status) once the session's end was announced; None while it is live."""
        async with translated_redis_errors():
            reason, status = await resolved(
                self._redis.hmget(
                    session_meta_key(self.prefix, session_id), ["ended", "ended_status"]
                )
            )
        return None if reason is None else (str(reason), str(status or "ended"))


async def announce_end(
    redis: Redis, session_id: str, reason: str, status: str, *, prefix: str = DEFAULT_PREFIX
) -> None:
    """Mark the session ended for the gateway and tell its sockets, in one transaction: from
    here on append_patch.lua refuses every patch of it (nothing is acked for a session that is
    not live), and every editor socket hears `ended` and closes. Called right after Postgres
    recorded the end, by every path that ends a session (pool.lifecycle)."""
    meta = session_meta_key(prefix, session_id)
    envelope = {"kind": "ended", "reason": reason, "status": status}
    async with translated_redis_errors(), redis.pipeline(transaction=True) as pipe:
        pipe.hset(meta, mapping={"ended": reason, "ended_status": status})
        pipe.expire(meta, ENDED_MARK_SECONDS)
        pipe.publish(session_channel(prefix, session_id), json.dumps(envelope))
        await pipe.execute()


async def announce_idle_warning(
    redis: Redis, session_id: str, seconds_left: int, *, prefix: str = DEFAULT_PREFIX
) -> None:
    """Tell the session's editors it ends for inactivity in `seconds_left` unless a frame (or a
    heartbeat) arrives. Pub/sub only: an editor that is not connected has nobody to warn."""
    envelope = {"kind": "idleWarning", "secondsLeft": seconds_left}
    async with translated_redis_errors():
        await redis.publish(session_channel(prefix, session_id), json.dumps(envelope))


async def push_snapshot(edits: EditLog, session_id: str, machine_id: str) -> int:
    """Publish the session's full file set to the machine's channel, where the gateway instance
    holding the machine's agent socket relays it as `hydrate`. Returns the snapshot's seq."""
    snapshot = await edits.snapshot(session_id)
    await edits.publish(
        machine_channel(edits.prefix, machine_id),
        {
            "kind": "hydrate",
            "session": session_id,
            "seq": snapshot.seq,
            "files": snapshot.files,
            "deleted": snapshot.deleted,
        },
    )
    return snapshot.seq

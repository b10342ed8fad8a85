"""Auto-pipelining of the gateway's hot Lua calls: one write and one read for many sockets.

Every patch costs two script calls (the append, then the machine's `applied` report). Sent one
by one, each call is a write and a read on the socket to Redis, plus redis-py's connection
checkout and reply plumbing: under load that was a fifth of the web process's CPU. Here a
caller only queues its call and awaits a future. One flusher task sends whatever is queued as
one pipeline on its own connection (no MULTI: each script is atomic on its own; no pool
checkout, no Pipeline object), reads the replies and resolves the futures. While a batch is in
flight the next one accumulates, so the busier the process, the larger the batches; an idle
process sends a lone call at once (no timer, no added delay).

Order: calls go out in the order they were queued, and each socket awaits its reply before its
next call, so one socket's calls never overtake each other.

Errors: a Redis error reply is raised to its own caller only; a connection found dead is
replaced and the batch sent once more (so the scripts sent through here must be idempotent);
a connection lost twice fails every call of the batch with the redis-py error, which callers
translate as they would for a direct call (`translated_redis_errors`). A script Redis does
not know yet (NOSCRIPT: a restarted or flushed server) is loaded and its calls are sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

MAX_BATCH = 500


class BatcherClosed(RedisError):
    """A call queued after stop() (or still queued when it ran): it was never sent."""


@dataclass(frozen=True)
class _Call:
    script: AsyncScript
    keys: tuple[str, ...]
    args: tuple[str | int, ...]
    future: asyncio.Future[Any]


class ScriptBatcher:
    def __init__(self, redis: Redis, *, max_batch: int = MAX_BATCH) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._queued: list[_Call] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._connection: AbstractConnection | None = None
        self.pipelines_sent = 0  # for tests and profiling: calls / pipelines is the batch size

    async def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_forever(), name="redis-script-batcher")

    async def stop(self) -> None:
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        queued, self._queued = self._queued, []
        _fail(queued, BatcherClosed("the script batcher is closed"))
        if self._connection is not None:
            await self._connection.disconnect()
            self._connection = None

    async def run(self, script: AsyncScript, keys: Sequence[str], *args: str | int) -> Any:
        """The reply of `script` (`keys`, `args`), sent with whatever else is queued."""
        return await self.submit(script, keys, *args)

    def submit(
        self, script: AsyncScript, keys: Sequence[str], *args: str | int
    ) -> asyncio.Future[Any]:
        """Queue the call and return its future at once: for a caller that need not wait for
        the reply before going on. The future always completes (reply, error, or
        BatcherClosed at stop); whoever holds it must retrieve its exception."""
        if self._closed or self._flusher is None:
            raise BatcherClosed("the script batcher is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append(_Call(script, tuple(keys), args, future))
        self._wake.set()
        return future

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
            if not self._queued:
                self._wake.clear()
            try:
                replies = await self._send(batch)
            except asyncio.CancelledError:
                _fail(batch, BatcherClosed("the script batcher stopped mid-batch"))
                raise
            except Exception as exc:  # never die: every caller must hear back
                _fail(batch, exc)
                continue
            for call, reply in zip(batch, replies, strict=True):
                if call.future.done():
                    continue  # the caller was cancelled (its socket closed)
                if isinstance(reply, Exception):
                    call.future.set_exception(reply)
                else:
                    call.future.set_result(reply)

    async def _send(self, batch: list[_Call]) -> list[Any]:
        try:
            replies = await self._pipeline(batch)
        except (RedisConnectionError, RedisTimeoutError):
            # The batcher's own connection is never checked out of a pool, so nothing noticed
            # that Redis closed it (a restart, a failover, a server-side idle timeout): the
            # first batch after that fails. Sent once more on a new connection. Some calls of
            # the failed batch may have run; sending them again is safe because every script
            # sent through here is idempotent (an append of a seq already in the stream is
            # answered `dup`; an applied report keeps the highest seq).
            replies = await self._pipeline(batch)
        unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:
            for script in {id(batch[i].script): batch[i].script for i in unknown}.values():
                await self._redis.script_load(script.script)
            again = await self._pipeline([batch[i] for i in unknown])
            for i, reply in zip(unknown, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        self.pipelines_sent += 1
        if self._connection is None:
            self._connection = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        try:
            await connection.connect()  # a no-op while connected
            await connection.send_packed_command(
                connection.pack_commands(
                    [
                        ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
                        for call in calls
                    ]
                ),
                check_health=False,
            )
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:  # that reply only; the next ones follow
                    replies.append(exc)
            return replies
        except BaseException:
            # Replies may be left unread: never reuse the connection in that state.
            await connection.disconnect(nowait=True)
            raise


def _fail(calls: list[_Call], exc: BaseException) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(exc)

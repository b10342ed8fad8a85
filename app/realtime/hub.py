"""One Redis pub/sub connection per web process, shared by every socket it serves.

Sockets subscribe to channels (a session's, a machine's) with a bounded queue; the hub's single
reader task parses each message once and puts it on the queues of that channel's listeners. A
listener that cannot keep up is not allowed to block the others: its queue overflows into a
`resync` marker, and the socket catches up from the edit stream, which is the source of truth.
Pub/sub is at-most-once, so after a reconnect to Redis every listener gets `resync` too.

A listener may pass a filter (`accept`): envelopes it refuses are dropped here, in the reader,
instead of waking the socket's relay task only to be ignored there. Each patch is published
once and heard by its editor (its own echo) and its agent, and each `applied` by both too:
filtering halves the relay wake-ups of the hot path. `resync` bypasses filters.

Concurrency: subscribe/unsubscribe only send commands (the reader task is the only one reading
the connection), serialised by a lock and reference-counted per channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from pool.core.errors import MalformedEnvelope
from pool.edits.envelopes import Envelope, parse_envelope
from pool.store.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resync:
    """The hub's own word to a listener, never published: what was published for it may be
    lost (its queue overflowed, or the hub was away from Redis); catch up from the stream."""


RESYNC = Resync()
QUEUE_SIZE = 1024

Delivery = Envelope | Resync
Accept = Callable[[Envelope], bool]


class Hub:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=True)
        self._listeners: dict[str, set[asyncio.Queue[Delivery]]] = {}
        self._filters: dict[asyncio.Queue[Delivery], Accept] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        # A channel nobody publishes on keeps the connection subscribed while no socket is.
        self._keepalive = Keys(prefix).hub_channel

    async def start(self) -> None:
        await self._pubsub.subscribe(self._keepalive)
        self._reader = asyncio.create_task(self._read_forever(), name="realtime-hub")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *channels: str, accept: Accept | None = None
    ) -> AsyncIterator[asyncio.Queue[Delivery]]:
        """A queue of the envelopes published on `channels` (and on any channel added later)
        that `accept` lets through; all of them without `accept`."""
        queue: asyncio.Queue[Delivery] = asyncio.Queue(QUEUE_SIZE)
        if accept is not None:
            self._filters[queue] = accept
        try:
            await self._add(queue, channels)
            yield queue
        finally:
            await self._remove(queue, channels)
            self._filters.pop(queue, None)

    async def add_channel(self, queue: asyncio.Queue[Delivery], channel: str) -> None:
        """Subscribe an existing listener to one more channel (an agent learning its session)."""
        await self._add(queue, (channel,))

    async def remove_channel(self, queue: asyncio.Queue[Delivery], channel: str) -> None:
        await self._remove(queue, (channel,))

    async def _add(self, queue: asyncio.Queue[Delivery], channels: tuple[str, ...]) -> None:
        async with self._lock:
            new = [c for c in channels if c not in self._listeners]
            for channel in channels:
                self._listeners.setdefault(channel, set()).add(queue)
            if new:
                await self._pubsub.subscribe(*new)

    async def _remove(self, queue: asyncio.Queue[Delivery], channels: tuple[str, ...]) -> None:
        async with self._lock:
            gone = []
            for channel in channels:
                listeners = self._listeners.get(channel)
                if listeners is None:
                    continue
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[channel]
                    gone.append(channel)
            if gone:
                with contextlib.suppress(RedisError):
                    await self._pubsub.unsubscribe(*gone)

    async def _read_forever(self) -> None:
        failing = False
        while True:
            try:
                # Blocking read (timeout=None): no timer armed and cancelled per message.
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("realtime hub lost Redis: %s", exc)
                failing = True
                await asyncio.sleep(0.5)
                continue
            if failing:
                # Messages published while we were away are gone: everyone catches up.
                failing = False
                self._deliver_all(RESYNC)
            if message is None or message.get("type") != "message":
                continue
            try:
                envelope = parse_envelope(message["data"])
            except MalformedEnvelope as exc:
                # Parsed here once for every listener: nothing malformed reaches a socket.
                log.warning(
                    "dropping a malformed pub/sub message on %s: %s", message.get("channel"), exc
                )
                continue
            self._deliver(str(message["channel"]), envelope)

    def _deliver(self, channel: str, envelope: Envelope) -> None:
        for queue in tuple(self._listeners.get(channel, ())):
            accept = self._filters.get(queue)
            if accept is None or accept(envelope):
                offer(queue, envelope)

    def _deliver_all(self, delivery: Delivery) -> None:
        for listeners in tuple(self._listeners.values()):
            for queue in tuple(listeners):
                offer(queue, delivery)


def offer(queue: asyncio.Queue[Delivery], delivery: Delivery) -> None:
    """Queue `envelope` for a socket; a full queue is replaced by one `resync`."""
    try:
        queue.put_nowait(delivery)
    except asyncio.QueueFull:
        # Too slow to keep up: drop what is queued and let it catch up from the stream.
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(RESYNC)

"""The alert evaluator's state in Redis (keys `alerts:*`, pool.store.keys).

Shared by every process so that an alert is announced once however many run the evaluator: each
process publishes its own counters (`publish_process`); whoever holds the evaluation lock
(`Inventory.exclusive("alerts")`) reads them all, keeps the figures it saw (`history`, the
windows of the rules), stores each instance's state and queues the messages to send (`commit`,
one transaction) and then delivers the queue (`outbox`), removing each message once the
webhook took it. A message the webhook refused stays first in the queue for the next tick.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from pool.core.alert_conditions import AlertState, Figures, Phase
from pool.core.alert_rules import Severity
from pool.store.keys import Keys
from pool.store.redis_errors import resolved, translated_redis_errors

# A process that stopped publishing is forgotten after this long.
PROCESS_TTL_SECONDS = 600
# Figures older than the longest window (plus a margin) are dropped from the history.
HISTORY_SECONDS = 1800 + 120
HISTORY_MAX = 2000
RECENT_MAX = 50


@dataclass(frozen=True)
class ProcessFigures:
    counters: dict[str, float]
    heartbeat: float  # the process's last worker tick (0: never, or not a worker)


@dataclass(frozen=True)
class ResolvedAlert:
    name: str
    severity: str
    summary: str
    fired_at: float
    resolved_at: float


def _figures_json(figures: Figures) -> str:
    return json.dumps(
        {
            "at": figures.at,
            "counters": dict(figures.counters),
            "hotReady": [[t, r, n] for (t, r), n in figures.hot_ready.items()],
            "heartbeat": figures.heartbeat,
            "storesUp": dict(figures.stores_up),
        }
    )


def _figures_of(text: str) -> Figures:
    raw = json.loads(text)
    return Figures(
        at=float(raw["at"]),
        counters={str(k): float(v) for k, v in raw["counters"].items()},
        hot_ready={(str(t), str(r)): int(n) for t, r, n in raw["hotReady"]},
        heartbeat=raw["heartbeat"],
        stores_up={str(k): bool(v) for k, v in raw["storesUp"].items()},
    )


def _state_json(state: AlertState) -> str:
    return json.dumps(
        {
            "key": state.key,
            "name": state.name,
            "severity": state.severity.value,
            "summary": state.summary,
            "phase": state.phase.value,
            "since": state.since,
        }
    )


def _state_of(text: str) -> AlertState:
    raw = json.loads(text)
    return AlertState(
        key=raw["key"],
        name=raw["name"],
        severity=Severity(raw["severity"]),
        summary=raw["summary"],
        phase=Phase(raw["phase"]),
        since=float(raw["since"]),
    )


class AlertStore:
    def __init__(self, redis: Redis, keys: Keys | None = None) -> None:
        self._redis = redis
        self.keys = keys or Keys()

    async def publish_process(self, process_id: str, figures: ProcessFigures) -> None:
        value = json.dumps({"counters": figures.counters, "heartbeat": figures.heartbeat})
        async with translated_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.alert_process(process_id), value, ex=PROCESS_TTL_SECONDS)
                pipe.sadd(self.keys.alerts("procs"), process_id)
                await pipe.execute()

    async def processes(self) -> dict[str, ProcessFigures]:
        """Every process that published within PROCESS_TTL_SECONDS (the others are pruned)."""
        async with translated_redis_errors():
            ids = sorted(await resolved(self._redis.smembers(self.keys.alerts("procs"))))
            if not ids:
                return {}
            values = await self._redis.mget([self.keys.alert_process(i) for i in ids])
            gone = [i for i, v in zip(ids, values, strict=True) if v is None]
            if gone:
                await resolved(self._redis.srem(self.keys.alerts("procs"), *gone))
        found = {}
        for process_id, value in zip(ids, values, strict=True):
            if value is not None:
                raw = json.loads(value)
                found[process_id] = ProcessFigures(
                    {str(k): float(v) for k, v in raw["counters"].items()},
                    float(raw["heartbeat"]),
                )
        return found

    async def history(self) -> list[Figures]:
        async with translated_redis_errors():
            items = await resolved(self._redis.lrange(self.keys.alerts("history"), 0, -1))
        return [_figures_of(item) for item in items]

    async def states(self) -> dict[str, AlertState]:
        async with translated_redis_errors():
            raw = await resolved(self._redis.hgetall(self.keys.alerts("state")))
        return {key: _state_of(value) for key, value in raw.items()}

    async def commit(
        self,
        figures: Figures,
        states: Mapping[str, AlertState],
        messages: Sequence[Mapping[str, Any]],
        resolved_alerts: Sequence[ResolvedAlert],
    ) -> None:
        """The evaluation's outcome, all at once: the figures kept for later windows (older
        ones dropped), every instance's state, the messages to send, the resolved ones."""
        history = self.keys.alerts("history")
        async with translated_redis_errors():
            kept = await resolved(self._redis.lrange(history, 0, -1))
            stale = sum(1 for item in kept if json.loads(item)["at"] < figures.at - HISTORY_SECONDS)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(history, _figures_json(figures))
                pipe.ltrim(history, max(stale, len(kept) + 1 - HISTORY_MAX), -1)
                pipe.delete(self.keys.alerts("state"))
                if states:
                    pipe.hset(
                        self.keys.alerts("state"),
                        mapping={key: _state_json(s) for key, s in states.items()},
                    )
                for message in messages:
                    pipe.rpush(self.keys.alerts("outbox"), json.dumps(message))
                for done in resolved_alerts:
                    pipe.lpush(self.keys.alerts("recent"), json.dumps(done.__dict__))
                pipe.ltrim(self.keys.alerts("recent"), 0, RECENT_MAX - 1)
                await pipe.execute()

    async def next_message(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest undelivered message (its stored text, to remove it by) or None."""
        async with translated_redis_errors():
            text = await resolved(self._redis.lindex(self.keys.alerts("outbox"), 0))
        return None if text is None else (str(text), json.loads(text))

    async def delivered(self, text: str) -> None:
        async with translated_redis_errors():
            await resolved(self._redis.lrem(self.keys.alerts("outbox"), 1, text))

    async def recent(self) -> list[ResolvedAlert]:
        async with translated_redis_errors():
            items = await resolved(self._redis.lrange(self.keys.alerts("recent"), 0, -1))
        return [ResolvedAlert(**json.loads(item)) for item in items]

"""The in-process alert evaluator: the rules of ops/prometheus/alerts.yml for deployments
without Prometheus, posted to a Slack-compatible webhook (PREVIEW_ALERT_WEBHOOK_URL).

Every process that runs it (the worker on a cron tick, the web server on a loop of its own, so
a dead worker is noticed) first publishes its own counters, read from its metrics registry's
exposition text (the series a Prometheus scrape sees). Then, under a lock over all processes,
one of them gathers the figures (every process's counters, the pools' lease stats and hot ready
machines from Redis, the newest worker heartbeat, whether Redis and Postgres answer), judges the
rules (pool.core.alert_conditions), stores each instance's state and queues a message for each
alert that fired or resolved, in one transaction (pool.store.alert_store), and delivers the
queue. A firing alert is announced once, however many processes tick; a message the webhook
refused is sent again at the next tick.

When Redis itself is down there is no shared state: each process then says so once on its own
(after the rule's `for:`), and says when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from pool.core.alert_conditions import (
    APPLIED_BUCKET,
    HITS_FIELD,
    LEASE_BUCKET,
    LEASES,
    MISSES_FIELD,
    ORPHANS,
    POOL_STATS,
    PROVIDER_ERRORS_SERIES,
    AlertState,
    Figures,
    Observation,
    Phase,
    Transition,
    advance_all,
    observe,
    series,
)
from pool.core.alert_rules import RULES_BY_NAME, STORE_DOWN
from pool.core.errors import PoolUnavailable
from pool.core.exposition import parse_exposition
from pool.services.metrics import Metrics
from pool.store.alert_store import AlertStore, ProcessFigures, ResolvedAlert
from pool.store.inventory import Inventory
from sql.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

EVALUATE_SECONDS = 15
WEBHOOK_TIMEOUT_SECONDS = 5.0
STORE_CHECK_SECONDS = 3.0
# Messages delivered per tick at most (a backlog drains over a few ticks).
DELIVERIES_PER_TICK = 20


def process_id(metrics: Metrics) -> str:
    """This process's registry: `dev`'s web server and worker share one, and publish as one."""
    return f"{socket.gethostname()}-{os.getpid()}-{id(metrics.registry):x}"


def process_figures(metrics: Metrics, process: str) -> ProcessFigures:
    """The counters the rules read, from the registry's exposition text."""
    counters: dict[str, float] = {}
    heartbeat = 0.0
    for sample in parse_exposition(metrics.registry.render()):
        labels = sample.labels
        try:
            match sample.name:
                case "preview_lease_total":
                    parts = (labels["template"], labels["region"], labels["outcome"])
                    counters[series(LEASES, process, *parts)] = sample.value
                case "preview_lease_duration_seconds_bucket":
                    parts = (labels["template"], labels["region"], labels["le"])
                    counters[series(LEASE_BUCKET, process, *parts)] = sample.value
                case "preview_edit_applied_seconds_bucket":
                    counters[series(APPLIED_BUCKET, process, labels["le"])] = sample.value
                case "preview_provider_errors_total":
                    provider, kind = labels["provider"], labels["kind"]
                    counters[series(PROVIDER_ERRORS_SERIES, process, provider, kind)] = sample.value
                case "preview_reconcile_orphans_destroyed_total":
                    counters[series(ORPHANS, process)] = sample.value
                case "preview_worker_heartbeat_timestamp_seconds":
                    heartbeat = max(heartbeat, sample.value)
        except ValueError:
            continue  # a label value that cannot be part of a series id: not one of ours
    return ProcessFigures(counters, heartbeat)


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat()


def webhook_message(state: AlertState, move: Transition, now: float) -> dict[str, Any]:
    """A Slack-compatible payload: `text` for any receiver, `blocks` for Slack."""
    rule = RULES_BY_NAME[state.name]
    if move is Transition.FIRED:
        text = f"FIRING [{state.severity.value}] {state.name}: {state.summary}"
    else:
        text = f"RESOLVED {state.name}: {state.summary} (firing since {iso(state.since)})"
    runbook = rule.runbook
    return {
        "text": f"{text}\n{rule.description}\nRunbook: {runbook}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"{rule.description} Runbook: {runbook}"}],
            },
        ],
        "alert": {
            "status": move.value,
            "name": state.name,
            "key": state.key,
            "severity": state.severity.value,
            "summary": state.summary,
            "at": iso(now),
        },
    }


@dataclass(frozen=True)
class TickReport:
    evaluated: bool  # False: another process held the lock, or Redis is down
    firing: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    delivered: int = 0


class AlertEvaluator:
    def __init__(
        self,
        redis: Redis,
        db: AsyncConnectionPool,
        metrics: Metrics,
        webhook_url: str | None,
        *,
        inventory: Inventory | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._webhook_url = webhook_url
        self._inventory = inventory or Inventory(redis)
        self.store = AlertStore(redis, self._inventory.keys)
        self.process = process_id(metrics)
        self._redis_down_since: float | None = None
        self._redis_down_told = False

    async def tick(self, now: float | None = None) -> TickReport:
        now = time.time() if now is None else now
        try:
            await self.store.publish_process(
                self.process, process_figures(self._metrics, self.process)
            )
            async with self._inventory.exclusive("alerts", ttl=30) as held:
                await self._redis_back(now)
                if not held:
                    return TickReport(evaluated=False)
                return await self._evaluate(now)
        except PoolUnavailable as exc:
            await self._redis_down(now, str(exc))
            return TickReport(evaluated=False)

    async def _evaluate(self, now: float) -> TickReport:
        figures = await self._figures(now)
        history = await self.store.history()
        states = await self.store.states()
        next_states, moves = advance_all(states, observe(history, figures), now)
        messages = []
        done = []
        for state, move in moves:
            if self._webhook_url:
                messages.append(webhook_message(state, move, now))
            if move is Transition.RESOLVED:
                done.append(
                    ResolvedAlert(state.name, state.severity.value, state.summary, state.since, now)
                )
        await self.store.commit(figures, next_states, messages, done)
        delivered = await self.deliver()
        return TickReport(
            evaluated=True,
            firing=sorted(k for k, s in next_states.items() if s.phase is Phase.FIRING),
            fired=[s.key for s, m in moves if m is Transition.FIRED],
            resolved=[s.key for s, m in moves if m is Transition.RESOLVED],
            delivered=delivered,
        )

    async def _figures(self, now: float) -> Figures:
        counters: dict[str, float] = {}
        heartbeat = 0.0
        for published in (await self.store.processes()).values():
            counters.update(published.counters)
            heartbeat = max(heartbeat, published.heartbeat)
        hot_ready: dict[tuple[str, str], int] = {}
        for pool in await self._inventory.pools():
            hits, misses = await self._inventory.hit_stats(pool)
            counters[series(POOL_STATS, pool.template, pool.region, HITS_FIELD)] = hits
            counters[series(POOL_STATS, pool.template, pool.region, MISSES_FIELD)] = misses
            hot_ready[(pool.template, pool.region)] = (await self._inventory.counts(pool)).ready
        return Figures(
            at=now,
            counters=counters,
            hot_ready=hot_ready,
            heartbeat=heartbeat or None,
            stores_up={"redis": True, "postgres": await self._postgres_up()},
        )

    async def _postgres_up(self) -> bool:
        try:
            async with asyncio.timeout(STORE_CHECK_SECONDS):
                async with self._db.connection(timeout=STORE_CHECK_SECONDS * 0.75) as conn:
                    await conn.execute("SELECT 1")
        except (psycopg.Error, DatabaseUnavailable, TimeoutError, OSError):
            # DatabaseUnavailable: the pool gave no connection in time (sql.database wraps
            # psycopg_pool's PoolTimeout); that is Postgres down, not a failed tick.
            return False
        return True

    async def deliver(self) -> int:
        """Send queued messages in order, each removed once the webhook took it; stops at the
        first refusal (the rest wait for the next tick). The number delivered."""
        if not self._webhook_url:
            return 0
        sent = 0
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            while sent < DELIVERIES_PER_TICK:
                queued = await self.store.next_message()
                if queued is None:
                    break
                text, message = queued
                if not await self._post(client, message):
                    break
                await self.store.delivered(text)
                sent += 1
        return sent

    async def _post(self, client: httpx.AsyncClient, message: dict[str, Any]) -> bool:
        assert self._webhook_url is not None
        try:
            answer = await client.post(self._webhook_url, json=message)
        except httpx.HTTPError as exc:
            log.warning("alert webhook unreachable: %s", exc)
            return False
        if answer.status_code >= 300:
            log.warning("alert webhook answered %d", answer.status_code)
            return False
        return True

    # -- Redis down: no shared state, so this process speaks for itself ---------------------

    def _redis_down_state(self, summary: str, since: float) -> AlertState:
        key = Observation(STORE_DOWN, (("store", "redis"),), 0).key
        return AlertState(key, STORE_DOWN.name, STORE_DOWN.severity, summary, Phase.FIRING, since)

    async def _redis_down(self, now: float, error: str) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = now
        if self._redis_down_told or now - self._redis_down_since < STORE_DOWN.for_seconds:
            return
        summary = f"redis is unavailable (seen by {self.process}: {error})"
        message = webhook_message(self._redis_down_state(summary, now), Transition.FIRED, now)
        self._redis_down_told = await self._post_now(message)

    async def _redis_back(self, now: float) -> None:
        since, told = self._redis_down_since, self._redis_down_told
        self._redis_down_since, self._redis_down_told = None, False
        if since is None or not told:
            return
        state = self._redis_down_state(f"redis is available again (to {self.process})", since)
        if not await self._post_now(webhook_message(state, Transition.RESOLVED, now)):
            self._redis_down_since, self._redis_down_told = since, told  # say it next tick

    async def _post_now(self, message: dict[str, Any]) -> bool:
        if not self._webhook_url:
            return True
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            return await self._post(client, message)


async def alerts_view(store: AlertStore) -> dict[str, Any]:
    """`GET /api/admin/alerts`: what fires now, and what resolved lately (newest first)."""
    states = await store.states()
    firing = sorted(
        (s for s in states.values() if s.phase is Phase.FIRING), key=lambda s: (s.since, s.key)
    )
    return {
        "firing": [
            {
                "name": s.name,
                "severity": s.severity.value,
                "summary": s.summary,
                "since": iso(s.since),
            }
            for s in firing
        ],
        "recent": [
            {
                "name": r.name,
                "severity": r.severity,
                "summary": r.summary,
                "firedAt": iso(r.fired_at),
                "resolvedAt": iso(r.resolved_at),
            }
            for r in await store.recent()
        ],
    }


@contextlib.asynccontextmanager
async def evaluating_alerts(
    evaluator: AlertEvaluator, every: float = EVALUATE_SECONDS
) -> AsyncIterator[None]:
    """Tick `evaluator` every `every` seconds while the context is open (the web server's
    loop; the worker ticks from its cron). The task is cancelled and awaited on exit."""

    async def loop() -> None:
        while True:
            try:
                await evaluator.tick()
            except Exception:
                log.exception("alert evaluation failed")
            await asyncio.sleep(every)

    task = asyncio.create_task(loop(), name="alerts")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["AlertEvaluator", "TickReport", "alerts_view", "evaluating_alerts"]

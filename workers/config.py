"""What a worker needs, built by the entry point (app.cli) from the validated settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from pool.core.provider import MachineProvider
from pool.services.metrics import Metrics
from pool.services.metrics_endpoint import Listen
from pool.services.refill import RefillSettings
from pool.store.inventory import PoolKey


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    redis_url: str
    # Given the worker's Redis client: a Fly provider shares its rate limits through it.
    provider_factory: Callable[[Redis], MachineProvider]
    default_pools: list[PoolKey]
    default_bounds: tuple[int, int]
    refill: RefillSettings
    pending_ttl_ms: int
    ondemand_max: int
    reap_interval_seconds: int = 5
    # Editors hear `idleWarning` this long (at most half the idle timeout) before an idle end.
    idle_warning_seconds: int = 60
    resize_interval_seconds: int = 5
    reconcile_interval_seconds: int = 30
    # The longest any job may run (arq cancels it then). A job whose worker was killed is run
    # again this + 10 s after it started (arq's in-progress key), and reconcile replaces a
    # machine left booting, recycling, moving or draining this long after its job last claimed
    # it.
    job_timeout_seconds: int = 180
    # Provider machines with no record are destroyed once this old (a create in flight has one).
    orphan_grace_seconds: float = 60.0
    # A ready machine whose agent has been gone this long is replaced.
    agent_lost_seconds: float = 60.0
    statsd: tuple[str | None, int, str] = (None, 8125, "preview")
    # The process's metrics (None: built from `statsd` by each worker); with `metrics_listen`,
    # run_worker serves their registry on GET /metrics (`dev` serves the shared one itself).
    metrics: Metrics | None = None
    metrics_listen: Listen | None = None
    # Where the alert evaluator posts (pool.services.alerts); None: state only.
    alert_webhook_url: str | None = None
    # A job waits this long for a Postgres connection before it counts the store as down.
    db_acquire_timeout_seconds: float = 3.0
    # Projects' last files older than this are deleted (reconcile's tick); a session started
    # from them waits at most restore_timeout_seconds for its machine to apply them.
    snapshot_retention_seconds: float = 168 * 3600.0
    restore_timeout_seconds: float = 15.0

"""The composition root: settings turned into the objects the processes run with, once, here.

`web`, `worker` and `dev` (app/cli.py, app/devserver.py) get their provider and their worker's
configuration from these functions and nowhere else. The web side's own resources (stores,
broker, hub) are opened by app/resources.py from the same settings.

This is the one module of `app` that names `workers` (besides the entry points that start a
worker): the worker is configured from the app's settings, and import-linter lists these
imports as the exceptions to `app | workers` being peers.
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.settings import Settings
from pool.core.provider import MachineProvider
from pool.providers.fly import FlyMachineDefaults, FlyProvider, FlyRuntime
from pool.providers.fly_budget import SharedRateLimiter
from pool.providers.fly_client import ProviderMeter
from pool.providers.local import LocalProvider
from pool.services.metrics import Metrics, make_metrics
from pool.services.metrics_endpoint import Listen
from pool.services.refill import RefillSettings
from pool.store.inventory import PoolKey
from workers.config import WorkerConfig


def process_metrics(settings: Settings) -> Metrics:
    """One process's metrics: statsd when configured, and the registry /metrics serves."""
    return make_metrics(
        settings.preview_statsd_host, settings.preview_statsd_port, settings.preview_statsd_prefix
    )


def metrics_listen(settings: Settings) -> Listen | None:
    """Where `web` and `worker` serve /metrics: every interface, PREVIEW_METRICS_PORT."""
    return Listen(None, settings.preview_metrics_port) if settings.preview_metrics_port else None


def worker_config(settings: Settings, metrics: Metrics | None = None) -> WorkerConfig:
    """What a worker process (`worker`, or the one `dev` runs beside the web server) is given:
    its stores, its provider (built in the worker, on its own Redis), its pools and timings.
    `metrics`: `dev`'s, shared with its web server, which serves them; without, the worker
    makes its own and serves them itself."""
    assert settings.database_url and settings.redis_url
    own = metrics or process_metrics(settings)
    return WorkerConfig(
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        provider_factory=lambda redis: make_provider(settings, redis, meter=own),
        default_pools=[PoolKey(t, settings.preview_default_region) for t in settings.templates],
        default_bounds=(settings.preview_pool_min, settings.preview_pool_max),
        refill=RefillSettings(
            refill_seconds=settings.preview_refill_seconds,
            headroom=settings.preview_pool_headroom,
            create_backoff_seconds=settings.preview_create_backoff_seconds,
            create_backoff_max_seconds=settings.preview_create_backoff_max_seconds,
            # The resize job's timeout (workers.settings caps every job's at the job timeout).
            resize_lock_seconds=min(120, settings.preview_job_timeout_seconds),
        ),
        pending_ttl_ms=int(settings.preview_pending_ttl_seconds * 1000),
        ondemand_max=settings.preview_ondemand_max,
        reap_interval_seconds=settings.preview_reap_interval_seconds,
        reconcile_interval_seconds=settings.preview_reconcile_interval_seconds,
        agent_lost_seconds=settings.preview_agent_lost_seconds,
        job_timeout_seconds=settings.preview_job_timeout_seconds,
        idle_warning_seconds=settings.preview_idle_warning_seconds,
        db_acquire_timeout_seconds=settings.preview_db_acquire_timeout_seconds,
        snapshot_retention_seconds=settings.snapshot_retention_seconds,
        restore_timeout_seconds=settings.preview_restore_timeout_seconds,
        statsd=(
            settings.preview_statsd_host,
            settings.preview_statsd_port,
            settings.preview_statsd_prefix,
        ),
        metrics=own,
        metrics_listen=None if metrics is not None else metrics_listen(settings),
        alert_webhook_url=settings.preview_alert_webhook_url,
    )


def make_provider(
    settings: Settings, redis: Redis | None = None, meter: ProviderMeter | None = None
) -> MachineProvider:
    """The configured provider. With `redis`, a Fly provider shares Fly's rate limits with
    every other process through it (pool.providers.fly_budget); without, it keeps them on its
    own. `meter` hears its API errors and rate-limit waits."""
    if settings.preview_provider == "fly":
        settings.require_service_config()
        assert settings.fly_api_token and settings.fly_preview_app and settings.preview_image
        regions = [r.strip() for r in settings.preview_regions.split(",") if r.strip()]
        return FlyProvider(
            settings.fly_preview_app,
            settings.fly_api_token.get_secret_value(),
            settings.preview_image,
            regions=regions or [settings.preview_default_region],
            defaults=FlyMachineDefaults(env=settings.machine_env),
            limiter=SharedRateLimiter(redis) if redis is not None else None,
            runtime=FlyRuntime(meter=meter),
        )
    return LocalProvider(
        settings.preview_data_dir.resolve(),
        orchestrator_ws_url=None if settings.preview_local_placeholder else settings.sandbox_ws_url,
        # A cold Vite boot on a busy laptop takes several seconds.
        start_timeout=30.0,
        pids_max=settings.preview_local_pids_max,
    )

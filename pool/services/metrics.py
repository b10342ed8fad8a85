"""The process's metrics: statsd datagrams (the card's package) and a Prometheus registry.

Names are documented in docs/metrics.md; keep the three in step. `incr`, `timing` and `gauge`
send statsd only, under the names the call sites always used. The named methods below
(`lease`, `pool_sizes`, `edit_acked`, ...) feed both: the statsd name and the Prometheus series
of the same meaning, from the same call site.

Statsd is fire-and-forget UDP (a missing server costs nothing) and absent without
PREVIEW_STATSD_HOST. The registry is always kept; pool.services.metrics_endpoint serves it on
PREVIEW_METRICS_PORT. Everything runs on the process's event loop: no locks.

High-rate paths pay little: an edit's ack and applied latencies are one histogram observe each
(plus a statsd timer when statsd is configured); a socket's frames are an integer add per frame
on a child resolved when the socket opened, and reach statsd in batches (`SocketMeter`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import statsd

from pool.core.prometheus import CounterChild, GaugeChild, HistogramChild, Registry
from pool.core.states import TIERS

# The lease outcomes (preview_lease_total's `outcome`) and their statsd names.
LEASE_OUTCOMES = {
    "hit": "lease.hit",
    "hit_suspended": "lease.hit.suspended",
    "hit_stopped": "lease.hit.stopped",
    "miss": "lease.miss",
    "exhausted": "lease.exhausted",
    "quota_exceeded": "lease.quota_exceeded",
    "rate_limited": "lease.rate_limited",
}
# What reconcile repaired that statsd hears (reconcile.<kind>), as it always did.
RECONCILE_STATSD = frozenset({"orphans_destroyed", "records_dropped", "records_restored"})
# A socket's frames reach statsd this many at a time (and the rest when it closes).
FRAMES_PER_STATSD_BATCH = 100


@dataclass(frozen=True)
class MachineSample:
    """One machine's resource use, as read from its cgroup or process tree (local) or reported
    by its agent (Fly). Totals are since the machine's processes started."""

    machine: str
    cpu_seconds: float
    memory_bytes: int
    devserver_restarts: int | None = None  # None: not known (the local sampler does not see it)


class Metrics:
    def __init__(self, client: statsd.StatsClient | None = None) -> None:
        self._statsd = client
        self.registry = registry = Registry()
        self.lease_total = registry.counter(
            "preview_lease_total",
            "Session lease attempts by outcome",
            ("template", "region", "outcome"),
        )
        self.lease_duration = registry.histogram(
            "preview_lease_duration_seconds",
            "The whole lease path of a created session, auth excluded",
            ("template", "region"),
        )
        self.pool_machines = registry.gauge(
            "preview_pool_machines",
            "Ready machines per tier, after the last resize",
            ("template", "region", "tier"),
        )
        self.pool_leased = registry.gauge(
            "preview_pool_leased", "Leased machines, after the last resize", ("template", "region")
        )
        self.pool_booting = registry.gauge(
            "preview_pool_booting",
            "Machines booting into the pool, after the last resize",
            ("template", "region"),
        )
        self.pool_target = registry.gauge(
            "preview_pool_target",
            "The last resize's target per tier",
            ("template", "region", "tier"),
        )
        self._edit_ack = registry.histogram(
            "preview_edit_ack_seconds", "Patch received by the gateway -> ack sent"
        ).labels()
        self._edit_applied = registry.histogram(
            "preview_edit_applied_seconds",
            "Patch received by the gateway -> the machine's applied report heard by it",
        ).labels()
        self.first_render_seconds = registry.histogram(
            "preview_first_render_seconds",
            "Session requested -> the preview's first render reported",
            ("template",),
        )
        self.sockets_open = registry.gauge(
            "preview_sockets_open", "Open gateway sockets", ("kind",)
        )
        self.frames_total = registry.counter(
            "preview_frames_total", "Frames received on gateway sockets", ("kind",)
        )
        self.frames_refused = registry.counter(
            "preview_frames_refused_total",
            "Frames refused on gateway sockets, by reason",
            ("kind", "reason"),
        )
        self.machine_cpu = registry.counter(
            "preview_machine_cpu_seconds_total", "CPU time of a machine's processes", ("machine",)
        )
        self.machine_memory = registry.gauge(
            "preview_machine_memory_bytes", "Memory in use by a machine", ("machine",)
        )
        self.machine_restarts = registry.counter(
            "preview_machine_devserver_restarts_total",
            "Restarts of a machine's dev server",
            ("machine",),
        )
        self.provider_errors = registry.counter(
            "preview_provider_errors_total",
            "Failed provider API calls (each try), by kind",
            ("provider", "kind"),
        )
        self.provider_waits = registry.counter(
            "preview_provider_rate_limit_wait_seconds_total",
            "Time spent waiting for the provider's rate limits",
            ("provider",),
        )
        self.job_duration = registry.histogram(
            "preview_job_duration_seconds", "Worker job run time", ("job",)
        )
        self.job_failures = registry.counter(
            "preview_job_failures_total", "Worker jobs that raised", ("job",)
        )
        self.reconcile_orphans = registry.counter(
            "preview_reconcile_orphans_destroyed_total",
            "Provider machines with no record, destroyed by reconcile",
        )
        self.reconcile_drift = registry.counter(
            "preview_reconcile_drift_total", "Drift reconcile repaired, by kind", ("kind",)
        )
        self.heartbeat = registry.gauge(
            "preview_worker_heartbeat_timestamp_seconds", "Unix time of the worker's last tick"
        )
        self.store_up_gauge = registry.gauge(
            "preview_store_up", "Whether the store answered at the last check", ("store",)
        )
        self.project_files_total = registry.counter(
            "preview_project_files_total",
            "Project files kept at a session's end and restored into a new session, by outcome",
            ("outcome",),
        )

    def close(self) -> None:
        """Close the statsd socket (the registry needs nothing)."""
        if self._statsd is not None:
            self._statsd.close()
            self._statsd = None

    # -- statsd only, under the call sites' own names --------------------------------------

    def incr(self, name: str, count: int = 1) -> None:
        if self._statsd is not None:
            self._statsd.incr(name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        if self._statsd is not None:
            self._statsd.timing(name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        if self._statsd is not None:
            self._statsd.gauge(name, value)

    # -- both ------------------------------------------------------------------------------

    def lease(self, template: str, region: str, outcome: str) -> None:
        """One lease attempt's outcome (one of LEASE_OUTCOMES)."""
        self.incr(LEASE_OUTCOMES[outcome])
        self.lease_total.labels(template, region, outcome).inc()

    def leased_in(self, template: str, region: str, seconds: float) -> None:
        self.timing("lease.duration", seconds * 1000)
        self.lease_duration.labels(template, region).observe(seconds)

    def pool_sizes(
        self,
        template: str,
        region: str,
        ready: dict[str, int],
        targets: dict[str, int],
        leased: int,
        booting: int,
    ) -> None:
        """A pool after a resize: its ready machines and targets per tier (`hot`,
        `suspended`, `stopped`), its leased and booting machines."""
        prefix = f"pool.{template}.{region}"
        self.gauge(f"{prefix}.ready", ready["hot"])
        self.gauge(f"{prefix}.suspended", ready["suspended"])
        self.gauge(f"{prefix}.stopped", ready["stopped"])
        self.gauge(f"{prefix}.target", sum(targets.values()))
        self.gauge(f"{prefix}.leased", leased)
        self.gauge(f"{prefix}.booting", booting)
        for tier in TIERS:
            self.gauge(f"{prefix}.target.{tier.value}", targets[tier.value])
            self.pool_machines.labels(template, region, tier.value).set(ready[tier.value])
            self.pool_target.labels(template, region, tier.value).set(targets[tier.value])
        self.pool_leased.labels(template, region).set(leased)
        self.pool_booting.labels(template, region).set(booting)

    def edit_acked(self, seconds: float) -> None:
        """A patch's ack sent, `seconds` after the gateway received it (the hot path)."""
        self._edit_ack.observe(seconds)
        if self._statsd is not None:
            self._statsd.timing("edit.ack", seconds * 1000)

    def edit_applied(self, seconds: float) -> None:
        """A patch's applied report heard, `seconds` after the gateway received it."""
        self._edit_applied.observe(seconds)
        if self._statsd is not None:
            self._statsd.timing("edit.applied", seconds * 1000)

    def first_render(self, template: str, seconds: float) -> None:
        """A session's preview rendered for the first time, `seconds` after it was
        requested."""
        self.timing(f"first_render.{template}", seconds * 1000)
        self.first_render_seconds.labels(template).observe(seconds)

    def socket_meter(self, kind: str) -> SocketMeter:
        return SocketMeter(self, kind)

    def provider_error(self, provider: str, kind: str) -> None:
        self.incr(f"provider.{provider}.errors.{kind}")
        self.provider_errors.labels(provider, kind).inc()

    def rate_limit_wait(self, provider: str, seconds: float) -> None:
        self.timing(f"provider.{provider}.rate_limit_wait", seconds * 1000)
        self.provider_waits.labels(provider).inc(seconds)

    def job_ran(self, job: str, seconds: float, failed: bool) -> None:
        self.timing(f"job.{job}.duration", seconds * 1000)
        self.job_duration.labels(job).observe(seconds)
        if failed:
            self.incr(f"job.{job}.failed")
            self.job_failures.labels(job).inc()

    def reconciled(self, repaired: dict[str, int]) -> None:
        """One reconcile run's repairs, by kind (the fields of ReconcileReport:
        orphans_destroyed, records_dropped, sessions_failed, ...)."""
        for kind, count in repaired.items():
            if kind in RECONCILE_STATSD:
                self.incr(f"reconcile.{kind}", count)
            self.reconcile_drift.labels(kind).inc(count)
        self.reconcile_orphans.labels().inc(repaired.get("orphans_destroyed", 0))

    def worker_tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.gauge("worker.heartbeat", now)
        self.heartbeat.labels().set(now)

    def store_up(self, store: str, up: bool) -> None:
        """`store`: redis or postgres."""
        self.gauge(f"store.{store}.up", int(up))
        self.store_up_gauge.labels(store).set(int(up))

    def project_files(self, outcome: str) -> None:
        """A project's files kept or restored, or why not (pool.services.project_files)."""
        self.incr(f"project_files.{outcome}")
        self.project_files_total.labels(outcome).inc()

    def machines(self, samples: Iterable[MachineSample], *, complete: bool = False) -> None:
        """Machines' resource use. `complete`: these are all the machines there are, so the
        series of any other machine (destroyed since) are dropped."""
        seen = set()
        for sample in samples:
            seen.add((sample.machine,))
            prefix = f"machine.{sample.machine}"
            self.gauge(f"{prefix}.cpu_seconds", sample.cpu_seconds)
            self.gauge(f"{prefix}.memory_bytes", sample.memory_bytes)
            self.machine_cpu.labels(sample.machine).sync(sample.cpu_seconds)
            self.machine_memory.labels(sample.machine).set(sample.memory_bytes)
            if sample.devserver_restarts is not None:
                self.gauge(f"{prefix}.devserver_restarts", sample.devserver_restarts)
                self.machine_restarts.labels(sample.machine).sync(sample.devserver_restarts)
        if complete:
            for family in (self.machine_cpu, self.machine_memory, self.machine_restarts):
                for labels in family.label_sets():
                    if labels not in seen:
                        family.remove(*labels)


class SocketMeter:
    """One gateway socket's share of the metrics: opened/closed, frames, refusals. The frame
    counter child is resolved once; statsd hears the frames in batches."""

    __slots__ = ("_frames", "_kind", "_metrics", "_open", "_unsent")

    def __init__(self, metrics: Metrics, kind: str) -> None:
        self._metrics = metrics
        self._kind = kind
        self._frames: CounterChild = metrics.frames_total.labels(kind)
        self._open: GaugeChild = metrics.sockets_open.labels(kind)
        self._unsent = 0

    def opened(self) -> None:
        self._open.inc()
        self._metrics.gauge(f"gateway.sockets.{self._kind}", self._open.value)

    def closed(self) -> None:
        self._open.dec()
        self._metrics.gauge(f"gateway.sockets.{self._kind}", self._open.value)
        self._flush()

    def frame(self) -> None:
        self._frames.value += 1
        self._unsent += 1
        if self._unsent >= FRAMES_PER_STATSD_BATCH:
            self._flush()

    def edit_acked(self, seconds: float) -> None:
        self._metrics.edit_acked(seconds)

    def edit_applied(self, seconds: float) -> None:
        self._metrics.edit_applied(seconds)

    def refused(self, reason: str) -> None:
        self._metrics.incr(f"gateway.refused.{self._kind}.{reason}")
        self._metrics.frames_refused.labels(self._kind, reason).inc()

    def _flush(self) -> None:
        if self._unsent:
            self._metrics.incr(f"gateway.frames.{self._kind}", self._unsent)
            self._unsent = 0


class NullMetrics(Metrics):
    """No statsd; the registry still counts (served only where a process asks for it)."""

    def __init__(self) -> None:
        super().__init__(None)


def make_metrics(host: str | None, port: int, prefix: str) -> Metrics:
    return Metrics(statsd.StatsClient(host, port, prefix=prefix) if host else None)


__all__ = [
    "HistogramChild",
    "MachineSample",
    "Metrics",
    "NullMetrics",
    "SocketMeter",
    "make_metrics",
]

"""The alerts: one table, read by both places that evaluate them.

`ops/prometheus/alerts.yml` is rendered from `RULES` (`render_rules_yaml`; a test fails when the
file differs, `python -m pool.core.alert_rules > ops/prometheus/alerts.yml` regenerates it), and
the in-process evaluator (pool.services.alerts) judges the same conditions with the same
thresholds, windows and `for:` durations from the figures a process and Redis hold
(pool.core.alert_conditions). A threshold changes here, once.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

RUNBOOK = "docs/operations.md"


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    # PromQL, with {threshold}, {window} and {min_traffic} filled from the fields below.
    expr: str
    for_seconds: int
    summary: str  # Prometheus template text: may name {{ $labels.x }} and {{ $value }}
    description: str
    threshold: float = 0
    window_seconds: int = 0
    min_traffic: int = 0
    # What one firing instance is told apart by (the evaluator's and Prometheus's labels).
    by: tuple[str, ...] = ()

    @property
    def anchor(self) -> str:
        return "#" + self.name.lower()

    @property
    def runbook(self) -> str:
        return RUNBOOK + self.anchor

    def promql(self) -> str:
        return self.expr.format(
            threshold=format_number(self.threshold),
            window=duration(self.window_seconds),
            min_traffic=self.min_traffic,
        )


_HITS = 'outcome=~"hit|hit_suspended|hit_stopped"'
_POOL_ATTEMPTS = 'outcome=~"hit|hit_suspended|hit_stopped|miss|exhausted"'

POOL_EXHAUSTED = Rule(
    name="PreviewPoolExhausted",
    severity=Severity.CRITICAL,
    expr=(
        'sum by (template, region) (increase(preview_lease_total{{outcome="exhausted"}}'
        "[{window}])) > {threshold}\n"
        "or\n"
        '(sum by (template, region) (preview_pool_machines{{tier="hot"}}) == 0)\n'
        "and\n"
        "(sum by (template, region) (increase(preview_lease_total[{window}])) > 0)"
    ),
    for_seconds=120,
    threshold=0,
    window_seconds=300,
    summary="Pool {{ $labels.template }}/{{ $labels.region }} is exhausted",
    description=(
        "Leases were answered 503 (no machine, on-demand boots full), or the pool has no hot "
        "ready machine while leases arrive."
    ),
    by=("template", "region"),
)
HIT_RATIO_LOW = Rule(
    name="PreviewHitRatioLow",
    severity=Severity.WARNING,
    expr=(
        f"(sum by (template, region) (increase(preview_lease_total{{{{{_HITS}}}}}[{{window}}]))\n"
        f" / sum by (template, region) (increase(preview_lease_total{{{{{_POOL_ATTEMPTS}}}}}"
        "[{window}])))\n"
        " < {threshold}\n"
        "and\n"
        f"sum by (template, region) (increase(preview_lease_total{{{{{_POOL_ATTEMPTS}}}}}"
        "[{window}])) >= {min_traffic}"
    ),
    for_seconds=300,
    threshold=0.8,
    window_seconds=900,
    min_traffic=20,
    summary=(
        "Pool {{ $labels.template }}/{{ $labels.region }} hit ratio is "
        "{{ $value | humanizePercentage }}"
    ),
    description=(
        "Fewer than the threshold's share of leases found a ready machine over the window "
        "(with at least the minimum number of leases): sessions wait for boots."
    ),
    by=("template", "region"),
)
LEASE_P99_HIGH = Rule(
    name="PreviewLeaseLatencyHigh",
    severity=Severity.WARNING,
    expr=(
        "histogram_quantile(0.99, sum by (template, region, le) "
        "(rate(preview_lease_duration_seconds_bucket[{window}]))) > {threshold}"
    ),
    for_seconds=600,
    threshold=2.0,
    window_seconds=600,
    summary="Lease p99 of {{ $labels.template }}/{{ $labels.region }} is {{ $value | humanize }}s",
    description="The 99th percentile of the lease path's duration is above the threshold.",
    by=("template", "region"),
)
EDIT_APPLIED_P99_HIGH = Rule(
    name="PreviewEditAppliedLatencyHigh",
    severity=Severity.WARNING,
    expr=(
        "histogram_quantile(0.99, sum by (le) "
        "(rate(preview_edit_applied_seconds_bucket[{window}]))) > {threshold}"
    ),
    for_seconds=600,
    threshold=1.0,
    window_seconds=600,
    summary="Edit applied p99 is {{ $value | humanize }}s",
    description=(
        "The 99th percentile from a patch received to the machine's applied report is above "
        "the threshold: previews lag behind the editor."
    ),
)
PROVIDER_ERRORS = Rule(
    name="PreviewProviderErrors",
    severity=Severity.WARNING,
    expr=("sum by (provider) (increase(preview_provider_errors_total[{window}])) > {threshold}"),
    for_seconds=300,
    threshold=10,
    window_seconds=300,
    summary=(
        "Provider {{ $labels.provider }}: {{ $value | humanize }} failed API calls in the window"
    ),
    description="The machine provider's API keeps failing: creates, wakes and destroys suffer.",
    by=("provider",),
)
ORPHANS_FOUND = Rule(
    name="PreviewOrphansFound",
    severity=Severity.WARNING,
    expr="sum(increase(preview_reconcile_orphans_destroyed_total[{window}])) > {threshold}",
    for_seconds=0,
    threshold=0,
    window_seconds=1800,
    summary="Orphan machines destroyed by reconcile: {{ $value | humanize }}",
    description=(
        "The provider ran machines the pool had no record of (drift): reconcile destroyed "
        "them. Something creates machines without recording them, or records are lost."
    ),
)
WORKER_HEARTBEAT_STALE = Rule(
    name="PreviewWorkerHeartbeatStale",
    severity=Severity.CRITICAL,
    expr=(
        "time() - max(preview_worker_heartbeat_timestamp_seconds) > {threshold}\n"
        "or\n"
        "absent(preview_worker_heartbeat_timestamp_seconds)"
    ),
    for_seconds=60,
    threshold=60,
    summary="No worker has ticked for over a minute",
    description=(
        "No worker runs its cron jobs: pools are not refilled, leases not reaped, "
        "machines not recycled."
    ),
)
STORE_DOWN = Rule(
    name="PreviewStoreDown",
    severity=Severity.CRITICAL,
    expr="min by (store) (preview_store_up) == {threshold}",
    for_seconds=60,
    threshold=0,
    summary="{{ $labels.store }} is unavailable",
    description="A process cannot reach Redis or Postgres: leases and edits fail.",
    by=("store",),
)

RULES: tuple[Rule, ...] = (
    POOL_EXHAUSTED,
    HIT_RATIO_LOW,
    LEASE_P99_HIGH,
    EDIT_APPLIED_P99_HIGH,
    PROVIDER_ERRORS,
    ORPHANS_FOUND,
    WORKER_HEARTBEAT_STALE,
    STORE_DOWN,
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}


def duration(seconds: int) -> str:
    """Seconds as a Prometheus duration: 900 → 15m, 60 → 1m, 90 → 90s, 0 → 0s."""
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _quoted(text: str) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps(text)


def render_rules_yaml() -> str:
    """ops/prometheus/alerts.yml, exactly."""
    lines = [
        "# Generated from pool/core/alert_rules.py (the thresholds live there, shared with the",
        "# in-process evaluator): python -m pool.core.alert_rules > ops/prometheus/alerts.yml",
        "groups:",
        "  - name: preview-orchestrator",
        "    rules:",
    ]
    for rule in RULES:
        lines.append(f"      - alert: {rule.name}")
        lines.append("        expr: |")
        lines.extend(f"          {line}" for line in rule.promql().splitlines())
        lines.append(f"        for: {duration(rule.for_seconds)}")
        lines.append("        labels:")
        lines.append(f"          severity: {rule.severity.value}")
        lines.append("        annotations:")
        lines.append(f"          summary: {_quoted(rule.summary)}")
        lines.append(f"          description: {_quoted(rule.description)}")
        lines.append(f"          runbook: {_quoted(rule.runbook)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_rules_yaml(), end="")

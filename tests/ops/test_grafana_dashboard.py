"""ops/grafana/preview-orchestrator.json: valid JSON, a Prometheus datasource variable, unique
panel ids, and every query naming only the metrics of docs/metrics.md that the code registers
(and parsing as PromQL: promtool checks each as a recording rule)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pool.core.exposition import parse_exposition
from pool.services.metrics import NullMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "preview-orchestrator.json"

# The Prometheus names the metrics contract of issue 11 fixes (docs/metrics.md).
CONTRACT = {
    "preview_lease_total": "counter",
    "preview_lease_duration_seconds": "histogram",
    "preview_pool_machines": "gauge",
    "preview_pool_leased": "gauge",
    "preview_pool_booting": "gauge",
    "preview_pool_target": "gauge",
    "preview_edit_ack_seconds": "histogram",
    "preview_edit_applied_seconds": "histogram",
    "preview_first_render_seconds": "histogram",
    "preview_sockets_open": "gauge",
    "preview_frames_total": "counter",
    "preview_frames_refused_total": "counter",
    "preview_machine_cpu_seconds_total": "counter",
    "preview_machine_memory_bytes": "gauge",
    "preview_machine_devserver_restarts_total": "counter",
    "preview_provider_errors_total": "counter",
    "preview_provider_rate_limit_wait_seconds_total": "counter",
    "preview_job_duration_seconds": "histogram",
    "preview_job_failures_total": "counter",
    "preview_reconcile_orphans_destroyed_total": "counter",
    "preview_reconcile_drift_total": "counter",
    "preview_worker_heartbeat_timestamp_seconds": "gauge",
    "preview_store_up": "gauge",
}
_METRIC = re.compile(r"\bpreview_[a-z0-9_]+")
_HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in node.get("panels", []):
        found.append(panel)
        found.extend(_panels(panel))  # a collapsed row holds its panels
    return found


def _exprs() -> list[str]:
    return [t["expr"] for p in _panels(_dashboard()) for t in p.get("targets", [])]


def metric_of(name: str) -> str:
    """The family a series name belongs to: a histogram's _bucket/_sum/_count are its own."""
    base = _HISTOGRAM_SERIES.sub("", name)
    return base if CONTRACT.get(base) == "histogram" else name


def test_panel_ids_are_unique_and_queries_use_the_datasource_variable() -> None:
    dashboard = _dashboard()
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"


def test_queries_name_only_contract_metrics_and_cover_them() -> None:
    used = set()
    for expr in _exprs():
        names = {metric_of(name) for name in _METRIC.findall(expr)}
        assert names, f"a query names no metric: {expr}"
        unknown = names - set(CONTRACT)
        assert not unknown, f"{expr} names metrics outside the contract: {sorted(unknown)}"
        used |= names
    assert used == set(CONTRACT), f"no panel shows {sorted(set(CONTRACT) - used)}"


def test_the_code_registers_every_contract_metric() -> None:
    text = NullMetrics().registry.render()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    for name, kind in CONTRACT.items():
        assert types.get(name) == kind, f"{name}: registered as {types.get(name)}, not {kind}"
    assert parse_exposition(text)  # what the alert evaluator reads parses


def test_queries_are_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (.ci/run does)")
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$template", ".*").replace("$region", ".*"),
        }
        for i, expr in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

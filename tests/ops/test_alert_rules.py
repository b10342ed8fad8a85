"""ops/prometheus: the rules are what pool/core/alert_rules.py renders, promtool accepts them,
and its unit tests (alerts_test.yml) make every rule fire, and each stay quiet at least once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pool.core.alert_rules import RULES, duration, render_rules_yaml

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES_FILE = OPS / "alerts.yml"
TESTS_FILE = OPS / "alerts_test.yml"


def _promtool(*args: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (.ci/run does)")
    done = subprocess.run(
        [promtool, *args], cwd=OPS, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def test_rules_file_is_rendered_from_the_table() -> None:
    assert RULES_FILE.read_text() == render_rules_yaml(), (
        "ops/prometheus/alerts.yml differs from pool/core/alert_rules.py: "
        "python -m pool.core.alert_rules > ops/prometheus/alerts.yml"
    )


def test_rules_carry_the_tables_thresholds() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())["groups"][0]["rules"]
    by_name = {rule["alert"]: rule for rule in rules}
    assert list(by_name) == [rule.name for rule in RULES]
    for rule in RULES:
        written = by_name[rule.name]
        assert written["for"] == duration(rule.for_seconds)
        assert written["labels"]["severity"] == rule.severity.value
        assert written["annotations"]["runbook"] == f"docs/operations.md{rule.anchor}"
        assert written["expr"].strip() == rule.promql()
        if rule.window_seconds:
            assert f"[{duration(rule.window_seconds)}]" in written["expr"]


def test_promtool_checks_the_rules() -> None:
    _promtool("check", "rules", RULES_FILE.name)


def test_promtool_unit_tests_pass() -> None:
    _promtool("test", "rules", TESTS_FILE.name)


def test_every_rule_fires_and_stays_quiet_in_the_unit_tests() -> None:
    cases: list[dict[str, Any]] = [
        case
        for test in yaml.safe_load(TESTS_FILE.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    names = {rule.name for rule in RULES}
    assert fires == names, f"rules never made to fire: {sorted(names - fires)}"
    assert quiet == names, f"rules never checked quiet: {sorted(names - quiet)}"


def test_runbook_anchors_exist_in_the_operations_doc() -> None:
    doc = (OPS.parents[1] / "docs" / "operations.md").read_text()
    for rule in RULES:
        assert f"### {rule.name}" in doc, f"docs/operations.md has no section for {rule.name}"

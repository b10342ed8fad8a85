"""The registry's text format: what a Prometheus scraper reads from it."""

from __future__ import annotations

import math

import pytest

from pool.core.prometheus import BUCKETS, Registry, escape_label_value, format_value
from tests.prom_text import parse, sample


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ('say "hi"', 'say \\"hi\\"'),
        ("C:\\path", "C:\\\\path"),
        ("two\nlines", "two\\nlines"),
        # A backslash before a quote: both escaped, the quote's backslash not doubled again.
        ('\\"', '\\\\\\"'),
        ("ünïcode ✓", "ünïcode ✓"),
    ],
)
def test_label_values_are_escaped_and_read_back(raw: str, escaped: str) -> None:
    assert escape_label_value(raw) == escaped
    registry = Registry()
    registry.counter("c_total", "a counter", ("v",)).labels(raw).inc(3)
    _, samples = parse(registry.render())
    assert sample(samples, "c_total", v=raw) == 3


def test_histogram_buckets_are_cumulative_with_count_and_sum() -> None:
    registry = Registry()
    latency = registry.histogram("h_seconds", "latency", ("route",))
    observed = [0.001, 0.005, 0.0051, 0.3, 0.3, 2.5, 61.0, 100.0]
    for value in observed:
        latency.labels("/x").observe(value)
    types, samples = parse(registry.render())
    assert types["h_seconds"] == "histogram"
    for bound in BUCKETS:
        le = format_value(bound)
        expected = sum(1 for v in observed if v <= bound)  # `le` is inclusive
        assert sample(samples, "h_seconds_bucket", route="/x", le=le) == expected, le
    assert sample(samples, "h_seconds_bucket", route="/x", le="+Inf") == len(observed)
    assert sample(samples, "h_seconds_count", route="/x") == len(observed)
    assert sample(samples, "h_seconds_sum", route="/x") == pytest.approx(sum(observed))
    cumulative = [
        samples[("h_seconds_bucket", frozenset({("route", "/x"), ("le", format_value(b))}))]
        for b in (*BUCKETS, math.inf)
    ]
    assert cumulative == sorted(cumulative)  # never down from one bucket to the next


def test_unlabelled_series_show_zero_before_anything_happens() -> None:
    registry = Registry()
    registry.counter("events_total", "events")
    registry.histogram("wait_seconds", "waits")
    registry.gauge("temperature", "a gauge", ("room",))  # labelled: nothing until used
    types, samples = parse(registry.render())
    assert sample(samples, "events_total") == 0
    assert sample(samples, "wait_seconds_count") == 0
    assert sample(samples, "wait_seconds_bucket", le="+Inf") == 0
    assert types == {"events_total": "counter", "wait_seconds": "histogram", "temperature": "gauge"}
    assert not [k for k in samples if k[0] == "temperature"]


def test_gauges_go_both_ways_and_counters_only_up() -> None:
    registry = Registry()
    gauge = registry.gauge("open", "open things", ("kind",)).labels("a")
    gauge.inc()
    gauge.inc()
    gauge.dec()
    counter = registry.counter("done_total", "done").labels()
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1)
    _, samples = parse(registry.render())
    assert sample(samples, "open", kind="a") == 1


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        ("bad-name", (), "not a valid metric name"),
        ("ok", ("bad-label",), "not a valid label name"),
        ("ok", ("__reserved",), "not a valid label name"),
    ],
)
def test_bad_names_are_refused(name: str, labels: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Registry().counter(name, "x", labels)


def test_a_histogram_refuses_le_and_a_name_is_registered_once() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="le"):
        registry.histogram("h", "x", ("le",))
    registry.gauge("g", "x")
    with pytest.raises(ValueError, match="already registered"):
        registry.counter("g", "x")


def test_wrong_number_of_label_values_is_refused() -> None:
    family = Registry().counter("c_total", "x", ("a", "b"))
    with pytest.raises(ValueError, match="takes labels"):
        family.labels("only one")


def test_help_text_escapes_backslash_and_newline() -> None:
    registry = Registry()
    registry.counter("c_total", "first line\nsecond \\ line")
    assert "# HELP c_total first line\\nsecond \\\\ line" in registry.render()


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (2.5, "2.5"), (0.005, "0.005"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)
def test_values_are_formatted_as_go_parses_them(value: float, text: str) -> None:
    assert format_value(value) == text

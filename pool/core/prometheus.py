"""An in-process registry of labelled counters, gauges and histograms, rendered in Prometheus's
text exposition format (version 0.0.4).

Pure and small on purpose: no dependency, no I/O, no locks. Every process (web, worker) keeps
one registry; everything that updates it runs on that process's event loop, and so does the
endpoint that renders it (pool.services.metrics_endpoint), so an update never interleaves with
a render. The hot paths (a frame, an edit) hold a child resolved once (`family.labels(...)`)
and pay an integer add, or for a histogram a bisect and two adds.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

# Seconds; the same for every histogram, so dashboards and alert rules can rely on them.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount

    def sync(self, total: float) -> None:
        """Take a total counted elsewhere (a machine's CPU seconds, read from its cgroup)."""
        self.value = total


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class HistogramChild:
    """Counts per bucket (not cumulative: `observe` touches one); cumulated when rendered."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # `le` is inclusive: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        running, out = 0, []
        for n in self.counts:
            running += n
            out.append(running)
        return out


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


class Family(Generic[Child]):
    """One metric name and its children, one per combination of label values."""

    def __init__(
        self,
        kind: str,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        make: Callable[[], Child],
    ) -> None:
        self.kind = kind
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._make: Callable[[], Child] = make
        self._children: dict[tuple[str, ...], Child] = {}
        if not self.labelnames:
            self.labels()  # an unlabelled series is shown (as 0) before anything happens

    def labels(self, *values: str) -> Child:
        """The child for these label values (created on first use). Resolve it once where a
        path is hot and keep it."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"{self.name} takes labels {self.labelnames}, got {len(values)} values"
                )
            child = self._children[tuple(str(v) for v in values)] = self._make()
        return child

    def remove(self, *values: str) -> None:
        self._children.pop(values, None)

    def label_sets(self) -> list[tuple[str, ...]]:
        return list(self._children)

    def samples(self) -> Iterator[tuple[tuple[str, ...], Child]]:
        yield from sorted(self._children.items(), key=lambda item: item[0])


AnyFamily = Family[CounterChild] | Family[GaugeChild] | Family[HistogramChild]


class Registry:
    def __init__(self) -> None:
        self._families: dict[str, AnyFamily] = {}

    def _check(self, name: str, labelnames: Sequence[str], kind: str) -> None:
        if not _METRIC_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid metric name")
        if name in self._families:
            raise ValueError(f"{name} is already registered")
        for label in labelnames:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid label name")
            if kind == "histogram" and label == "le":
                raise ValueError("a histogram cannot have a label named le")

    def counter(
        self, name: str, help_text: str, labelnames: Sequence[str] = ()
    ) -> Family[CounterChild]:
        self._check(name, labelnames, "counter")
        family = Family("counter", name, help_text, labelnames, CounterChild)
        self._families[name] = family
        return family

    def gauge(
        self, name: str, help_text: str, labelnames: Sequence[str] = ()
    ) -> Family[GaugeChild]:
        self._check(name, labelnames, "gauge")
        family = Family("gauge", name, help_text, labelnames, GaugeChild)
        self._families[name] = family
        return family

    def histogram(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: tuple[float, ...] = BUCKETS,
    ) -> Family[HistogramChild]:
        self._check(name, labelnames, "histogram")
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be increasing")
        family = Family("histogram", name, help_text, labelnames, lambda: HistogramChild(buckets))
        self._families[name] = family
        return family

    def render(self) -> str:
        lines: list[str] = []
        for family in self._families.values():
            lines.append(f"# HELP {family.name} {escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            for values, child in family.samples():
                pairs = list(zip(family.labelnames, values, strict=True))
                if isinstance(child, HistogramChild):
                    lines.extend(_histogram_lines(family.name, pairs, child))
                else:
                    lines.append(f"{family.name}{_labels(pairs)} {format_value(child.value)}")
        return "\n".join(lines) + "\n"


def _histogram_lines(
    name: str, pairs: list[tuple[str, str]], child: HistogramChild
) -> Iterator[str]:
    cumulative = child.cumulative()
    for bound, running in zip((*child.bounds, math.inf), cumulative, strict=True):
        yield f"{name}_bucket{_labels([*pairs, ('le', format_value(bound))])} {running}"
    yield f"{name}_sum{_labels(pairs)} {format_value(child.sum)}"
    yield f"{name}_count{_labels(pairs)} {child.count}"


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs) + "}"


def escape_label_value(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and line feed
    escaped (in that order: the backslashes the others add must not be doubled)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escapes backslash and line feed only."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))

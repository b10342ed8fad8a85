"""A strict reader of Prometheus's text exposition format, for the tests: what a scraper would
make of /metrics. Refuses what Prometheus would refuse (a bad line, a bad escape)."""

from __future__ import annotations

import math
import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Labels = frozenset[tuple[str, str]]


def _unescape(value: str) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) not in _ESCAPES:
            raise ValueError(f"bad escape {match.group(0)!r}")
        return _ESCAPES[match.group(0)]

    return re.sub(r"\\.", one, value)


def _labels(text: str) -> Labels:
    pairs, at = [], 0
    while at < len(text):
        match = _LABEL.match(text, at)
        if match is None:
            raise ValueError(f"bad labels {text!r}")
        pairs.append((match.group(1), _unescape(match.group(2))))
        at = match.end()
    return frozenset(pairs)


def _value(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, Labels], float]]:
    """(TYPE by family, value by (sample name, labels))."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, Labels], float] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"bad sample line {line!r}")
        key = (match.group(1), _labels(match.group(2) or ""))
        if key in samples:
            raise ValueError(f"duplicate sample {line!r}")
        samples[key] = _value(match.group(3))
    return types, samples


def sample(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))

"""statsd metrics behind one small interface; a null sink when no statsd host is configured.

Names are documented in docs/metrics.md; keep the two in step.
"""

from __future__ import annotations

from typing import Protocol

import statsd


class Metrics(Protocol):
    def incr(self, name: str, count: int = 1) -> None: ...

    def timing(self, name: str, milliseconds: float) -> None: ...

    def gauge(self, name: str, value: float) -> None: ...


class NullMetrics:
    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, milliseconds: float) -> None:
        pass

    def gauge(self, name: str, value: float) -> None:
        pass


class StatsdMetrics:
    """UDP statsd: fire-and-forget datagrams, so a missing statsd server costs nothing."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self._client = statsd.StatsClient(host, port, prefix=prefix)

    def incr(self, name: str, count: int = 1) -> None:
        self._client.incr(name, count)

    def timing(self, name: str, milliseconds: float) -> None:
        self._client.timing(name, milliseconds)

    def gauge(self, name: str, value: float) -> None:
        self._client.gauge(name, value)


def make_metrics(host: str | None, port: int, prefix: str) -> Metrics:
    return StatsdMetrics(host, port, prefix) if host else NullMetrics()

"""What the benchmarks share: percentiles, the machine they ran on, CPU read from /proc, and
fresh stores (a new database on the local Postgres server, a flushed Redis database)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from sql.migrate import apply_migrations
from tests.redis_claim import flush

POSTGRES, REDIS = frozenset({"postgres"}), frozenset({"redis-server", "valkey-server"})


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def machine_description() -> dict[str, Any]:
    """What a figure was measured on, for the report and its JSON."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
    }


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (Linux /proc); zeros when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_by_name(names: frozenset[str]) -> float:
    """CPU seconds of every process whose name is in `names` (all Postgres backends, say)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] in names:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def system_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


class HostBusy:
    """The whole host's CPU use (all cores, /proc/stat) in short samples, from a thread: what
    a per-process meter misses, such as a neighbour's short-lived processes. `during` says how
    busy the host was over a span, so a slow measurement can be matched with a busy host."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (start, end monotonic s, busy 0-1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="host-busy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the sampling (once the last span to judge is over); safe to call again."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        last, at = system_ticks(), time.monotonic()
        while not self._stop.wait(self.interval):
            ticks, now = system_ticks(), time.monotonic()
            if ticks[1] > last[1]:
                busy = (ticks[0] - last[0]) / (ticks[1] - last[1])
                self.samples.append((at, now, busy))
            last, at = ticks, now

    def during(self, start: float, end: float) -> float:
        """The busiest sample overlapping [start, end] (monotonic s), 0-1; NaN if none yet."""
        overlapping = [busy for s, e, busy in list(self.samples) if s < end and e > start]
        return max(overlapping, default=math.nan)


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new, migrated database on `admin_url`'s server, dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{admin_url.rpartition('/')[0]}/{name}"
        asyncio.run(apply_migrations(url))
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    flush(url)

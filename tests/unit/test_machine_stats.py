"""The `stats` frame at the gateway: strict validation, and how reports become per-machine
metrics (restart increases across reconnects and agent restarts; one CPU/memory source)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.realtime.frames import AgentStats, FrameError, parse_agent_frame
from app.realtime.machine_stats import MachineReports, restarts_increase
from pool.services.metrics import NullMetrics
from sandbox.agent.stats import stats_frame
from sandbox.agent.usage import Usage


def _stats(**fields: Any) -> str:
    return json.dumps({"v": 1, "type": "stats", **fields})


def test_what_the_agent_sends_is_accepted() -> None:
    parsed = parse_agent_frame(json.dumps(stats_frame(2, Usage(12.5, 300_000_000))))
    assert parsed == AgentStats(
        v=1, type="stats", devserverRestarts=2, cpuSeconds=12.5, memoryBytes=300_000_000
    )
    bare = parse_agent_frame(json.dumps(stats_frame(0, None)))
    assert (bare.devserverRestarts, bare.cpuSeconds, bare.memoryBytes) == (0, None, None)


@pytest.mark.parametrize(
    "text",
    [
        _stats(devserverRestarts=-1),
        _stats(devserverRestarts=10**9 + 1),
        _stats(devserverRestarts=10**40),
        _stats(devserverRestarts=True),
        _stats(devserverRestarts=1.0),
        _stats(devserverRestarts="3"),
        _stats(devserverRestarts=None),
        _stats(),
        _stats(devserverRestarts=1, cpuSeconds=-0.5, memoryBytes=1),
        _stats(devserverRestarts=1, cpuSeconds=1e11, memoryBytes=1),
        _stats(devserverRestarts=1, cpuSeconds="1", memoryBytes=1),
        _stats(devserverRestarts=1, cpuSeconds=True, memoryBytes=1),
        _stats(devserverRestarts=1, cpuSeconds=1.0, memoryBytes=-1),
        _stats(devserverRestarts=1, cpuSeconds=1.0, memoryBytes=2**50 + 1),
        _stats(devserverRestarts=1, cpuSeconds=1.0, memoryBytes=1.5),
        _stats(devserverRestarts=1, cpuSeconds=1.0, memoryBytes=[1]),
        _stats(devserverRestarts=1, cpuSeconds=1.0),  # CPU without memory
        _stats(devserverRestarts=1, memoryBytes=1),
        _stats(devserverRestarts=1, machine="someone-else"),  # an extra field
        # Python's json reads these tokens; they are no figures.
        '{"v":1,"type":"stats","devserverRestarts":1,"cpuSeconds":NaN,"memoryBytes":1}',
        '{"v":1,"type":"stats","devserverRestarts":1,"cpuSeconds":Infinity,"memoryBytes":1}',
        '{"v":1,"type":"stats","devserverRestarts":1,"cpuSeconds":1e999,"memoryBytes":1}',
        '{"v":true,"type":"stats","devserverRestarts":1}',
    ],
)
def test_a_hostile_stats_frame_is_refused(text: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_agent_frame(text)
    assert refused.value.code in ("invalid_frame", "unsupported_version")


@pytest.mark.parametrize(
    ("last", "reported", "increase"),
    [
        (None, 0, 0),
        (None, 4, 4),  # never heard here: the whole total is new to this process
        (4, 4, 0),
        (4, 6, 2),
        (6, 1, 1),  # a restarted agent counts from 0 again
        (6, 0, 0),
    ],
)
def test_restarts_increase(last: int | None, reported: int, increase: int) -> None:
    assert restarts_increase(last, reported) == increase


def _report(restarts: int, cpu: float | None = None, memory: int | None = None) -> AgentStats:
    return AgentStats(
        v=1, type="stats", devserverRestarts=restarts, cpuSeconds=cpu, memoryBytes=memory
    )


def test_restarts_add_up_across_reconnects_and_agent_restarts() -> None:
    metrics = NullMetrics()
    reports = MachineReports(metrics, usage_from_agents=True)
    restarts = metrics.machine_restarts
    reports.opened("m1")
    reports.record("m1", _report(0))
    assert restarts.labels("m1").value == 0  # shown before the first restart
    reports.record("m1", _report(2))
    # The socket drops; the same agent reconnects and carries on counting.
    reports.closed("m1")
    reports.opened("m1")
    reports.record("m1", _report(3))
    assert restarts.labels("m1").value == 3
    # Two sockets of one machine at once (a reconnect before the old one is noticed): one count.
    reports.opened("m1")
    reports.record("m1", _report(3))
    reports.record("m1", _report(3))
    assert restarts.labels("m1").value == 3
    # The agent restarted: its total starts from 0 again; nothing is lost or counted twice.
    reports.record("m1", _report(1))
    reports.record("m1", _report(2))
    assert restarts.labels("m1").value == 5
    assert restarts.label_sets() == [("m1",)]


def test_fly_usage_comes_from_reports_and_goes_with_the_last_socket() -> None:
    metrics = NullMetrics()
    reports = MachineReports(metrics, usage_from_agents=True)
    reports.opened("fly-1")
    reports.opened("fly-1")
    reports.record("fly-1", _report(0, 10.5, 200))
    reports.record("fly-1", _report(0, 11.0, 150))
    assert metrics.machine_cpu.labels("fly-1").value == 11.0
    assert metrics.machine_memory.labels("fly-1").value == 150
    reports.closed("fly-1")  # another socket of the machine is still open
    assert metrics.machine_memory.label_sets() == [("fly-1",)]
    reports.closed("fly-1")
    assert metrics.machine_cpu.label_sets() == metrics.machine_memory.label_sets() == []
    assert metrics.machine_restarts.label_sets() == [("fly-1",)]  # a counter stays


def test_local_usage_is_left_to_the_worker_sampler() -> None:
    metrics = NullMetrics()
    reports = MachineReports(metrics, usage_from_agents=False)
    # What the worker's sampler recorded (in `dev` the same registry): not overwritten.
    metrics.machine_cpu.labels("loc-1").sync(3.0)
    reports.opened("loc-1")
    reports.record("loc-1", _report(1, 99.0, 999))
    assert metrics.machine_cpu.labels("loc-1").value == 3.0
    assert metrics.machine_memory.label_sets() == []
    assert metrics.machine_restarts.labels("loc-1").value == 1
    reports.closed("loc-1")
    assert metrics.machine_cpu.labels("loc-1").value == 3.0  # the sampler's series stays

"""What preview machines report about themselves (`stats` frames), into the process's metrics.

One object per web process (`Resources.machine_reports`), shared by its sandbox sockets,
because a machine's figures outlive any one socket: an agent reconnects (a network blip, a web
deploy) and may hold two sockets for a moment, and an agent restarts and counts from 0 again.

Dev-server restarts. The agent reports its total since it started; the counter
`preview_machine_devserver_restarts_total{machine}` adds the increase since the machine's last
report heard by this process (`restarts_increase`): a total below the last one is a restarted
agent, whose whole total is new. A process that never heard the machine before adds the whole
total (its counter starts there). The series stays for the process's lifetime: removing a
counter and creating it again would read as a reset.

CPU and memory. Locally the worker reads each machine's cgroup or process group from outside
(workers.jobs.sample_machines); the agent's own figures would be a second source for the same
series, which Prometheus would add up across instances. So they are recorded here only when
the provider is not local (`usage_from_agents`), and dropped once the machine's last socket to
this process closes, so a destroyed machine's memory does not linger. The CPU counter is the
agent's total as reported (`sync`), like the worker's: a restarted agent reads as a reset.
"""

from __future__ import annotations

from app.realtime.frames import AgentStats
from pool.services.metrics import Metrics


def restarts_increase(last: int | None, reported: int) -> int:
    """How many restarts `reported` adds, after `last` (None: none heard from the machine)."""
    if last is None or reported < last:
        return reported
    return reported - last


class MachineReports:
    def __init__(self, metrics: Metrics, *, usage_from_agents: bool) -> None:
        self._metrics = metrics
        self.usage_from_agents = usage_from_agents
        self._restarts: dict[str, int] = {}  # each machine's last reported total
        self._sockets: dict[str, int] = {}

    def opened(self, machine: str) -> None:
        self._sockets[machine] = self._sockets.get(machine, 0) + 1

    def closed(self, machine: str) -> None:
        left = self._sockets.get(machine, 0) - 1
        if left > 0:
            self._sockets[machine] = left
            return
        self._sockets.pop(machine, None)
        if self.usage_from_agents:
            self._metrics.machine_cpu.remove(machine)
            self._metrics.machine_memory.remove(machine)

    def record(self, machine: str, stats: AgentStats) -> None:
        metrics = self._metrics
        prefix = f"machine.{machine}"
        reported = stats.devserverRestarts
        increase = restarts_increase(self._restarts.get(machine), reported)
        self._restarts[machine] = reported
        restarts = metrics.machine_restarts.labels(machine)
        restarts.inc(increase)  # by 0 too: a machine that never restarted shows 0
        metrics.gauge(f"{prefix}.devserver_restarts", restarts.value)
        if not self.usage_from_agents or stats.cpuSeconds is None or stats.memoryBytes is None:
            return
        metrics.machine_cpu.labels(machine).sync(stats.cpuSeconds)
        metrics.machine_memory.labels(machine).set(stats.memoryBytes)
        metrics.gauge(f"{prefix}.cpu_seconds", stats.cpuSeconds)
        metrics.gauge(f"{prefix}.memory_bytes", stats.memoryBytes)

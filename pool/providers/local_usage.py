"""What a local machine uses: CPU time and memory, from its cgroup when it has one (v2:
`cpu.stat` usage_usec and `memory.current`; v1: `cpuacct.usage` and `memory.usage_in_bytes`),
else summed over its process group from /proc (what lives now: the CPU time of children that
already exited and were reaped is in their parent's cutime/cstime, which is counted).

The parsers are pure and take the files' text; `read_usage` does the reading. The worker
samples every machine on a cron tick (workers.jobs.sample_machines) into the metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pool.providers import local_cgroup

PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    memory_bytes: int


def cpu_seconds_v2(cpu_stat: str) -> float:
    for line in cpu_stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1_000_000
    raise ValueError("cpu.stat has no usage_usec")


def parse_proc_stat(text: str) -> tuple[int, int, int, int]:
    """(pgrp, CPU ticks of the process and its reaped children, rss pages, ppid) from
    /proc/<pid>/stat; the command name may hold spaces and parentheses, so fields are counted
    from the last ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid 4, pgrp 5, utime 14, stime 15, cutime 16, cstime 17,
    # rss 24.
    ppid, pgrp = int(fields[1]), int(fields[2])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return pgrp, ticks, int(fields[21]), ppid


def group_usage(pgid: int, proc: Path = PROC) -> Usage:
    """The process group's CPU time and resident memory, from /proc."""
    ticks = pages = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pgrp, cpu, rss, _ = parse_proc_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone since the listing, or not readable: not ours to count
        if pgrp == pgid:
            ticks += cpu
            pages += rss
    return Usage(ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE"))


def cgroup_usage(layout: local_cgroup.Layout, name: str) -> Usage | None:
    """The machine's cgroup's own accounting; None when it has none (or it is gone)."""
    try:
        if layout.version == 2:
            directory = layout.parents["cpu"] / name
            cpu = cpu_seconds_v2((directory / "cpu.stat").read_text())
            memory = int((layout.parents["memory"] / name / "memory.current").read_text())
            return Usage(cpu, memory)
        cpu = int((layout.parents["cpu"] / name / "cpuacct.usage").read_text()) / 1e9
        memory_file = layout.parents["memory"] / name / "memory.usage_in_bytes"
        return Usage(cpu, int(memory_file.read_text()))
    except (OSError, KeyError, ValueError):
        return None


def read_usage(layout: local_cgroup.Layout | None, name: str, pgid: int | None) -> Usage | None:
    if layout is not None and (usage := cgroup_usage(layout, name)) is not None:
        return usage
    return group_usage(pgid) if pgid is not None else None

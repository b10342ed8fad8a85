"""What this machine uses, read from inside it: CPU seconds and memory bytes, for `stats`.

The agent's own cgroup (v2, named by the `0::` line of /proc/self/cgroup) accounts for the agent
and the dev server together: `cpu.stat` usage_usec and `memory.current`. On Fly the agent runs
in the VM's root cgroup, which has no `memory.current`; there, and wherever cgroup v2 is not
mounted, the figures are summed over the agent's process tree from /proc instead: user and system
ticks of each living process plus those of its reaped children (a dev server that crashed and was
restarted still counts), and resident pages.

Pure parsers take the files' text; `read_usage` does the reading, with the roots passed in so
tests can point it at a directory of their own. Any unreadable figure yields None: a `stats`
frame then omits it rather than sending a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    memory_bytes: int


def own_cgroup(proc_self_cgroup: str) -> str | None:
    """The cgroup v2 path (`0::/x/y` → `x/y`, the root → ``) in /proc/self/cgroup's text."""
    for line in proc_self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path.strip("/")
    return None


def cpu_seconds_v2(cpu_stat: str) -> float:
    for line in cpu_stat.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1_000_000
    raise ValueError("cpu.stat has no usage_usec")


def parse_proc_stat(text: str) -> tuple[int, int, int]:
    """(ppid, CPU ticks of the process and its reaped children, resident pages) from
    /proc/<pid>/stat. The command name may hold spaces and parentheses: fields are counted
    from the last ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17, rss 24.
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return int(fields[1]), ticks, int(fields[21])


def cgroup_usage(root: Path, path: str) -> Usage | None:
    directory = root / path
    try:
        cpu = cpu_seconds_v2((directory / "cpu.stat").read_text())
        memory = int((directory / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return Usage(cpu, memory)


def tree_usage(pid: int, proc: Path = PROC) -> Usage | None:
    """The CPU time and resident memory of `pid` and every living descendant."""
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_proc_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # gone since the listing: its time is in its parent's reaped share
    if pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(child)
    ticks = pages = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        _, cpu, rss = stats[current]
        ticks += cpu
        pages += rss
        pending.extend(children.get(current, ()))
    return Usage(ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE"))


def read_usage(
    pid: int | None = None, *, cgroup_root: Path = CGROUP_ROOT, proc: Path = PROC
) -> Usage | None:
    """This machine's use: its cgroup's (v2) when the agent has one of its own, else its
    process tree's. `pid`: whose cgroup and tree (this process by default)."""
    pid = os.getpid() if pid is None else pid
    try:
        path = own_cgroup((proc / str(pid) / "cgroup").read_text())
    except OSError:
        path = None
    if path is not None and (usage := cgroup_usage(cgroup_root, path)) is not None:
        return usage
    return tree_usage(pid, proc)

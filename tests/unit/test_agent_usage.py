"""The agent's own report: what it reads of its machine (a cgroup of its own, else /proc), the
`stats` frame, and when the reporter sends one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from sandbox.agent.devserver import DevServer, DevServerHooks
from sandbox.agent.stats import StatsReporter, stats_frame
from sandbox.agent.usage import (
    Usage,
    cpu_seconds_v2,
    own_cgroup,
    parse_proc_stat,
    read_usage,
    tree_usage,
)

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int, ppid: int, utime: int, stime: int, cutime: int, cstime: int, rss: int) -> str:
    # /proc/<pid>/stat: a command name with spaces and a ')' in it, then fields 3..24 and more.
    fields = ["S", ppid, pid, pid, 0, -1, 0, 0, 0, 0, 0, utime, stime, cutime, cstime]
    fields += [20, 0, 1, 0, 100, 1000, rss, 0]
    return f"{pid} (node (vite) x) " + " ".join(str(f) for f in fields) + "\n"


def _fake_proc(root: Path, processes: dict[int, tuple[int, int, int, int, int, int]]) -> Path:
    """`processes`: pid -> (ppid, utime, stime, cutime, cstime, rss pages)."""
    proc = root / "proc"
    for pid, (ppid, *figures) in processes.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(_stat(pid, ppid, *figures))
    (proc / "self").mkdir()  # not a pid: skipped
    return proc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/machines/loc-1\n", "machines/loc-1"),
        ("0::/\n", ""),
        # A hybrid host (v1 controllers plus the unified line): only the `0::` line counts.
        ("4:memory:/process_api/abc\n1:cpu:/\n0::/user.slice/x.scope\n", "user.slice/x.scope"),
        ("4:memory:/process_api/abc\n1:cpu,cpuacct:/\n", None),
        ("", None),
    ],
)
def test_own_cgroup_is_the_v2_line(text: str, expected: str | None) -> None:
    assert own_cgroup(text) == expected


def test_cpu_stat_and_proc_stat_parse() -> None:
    assert cpu_seconds_v2("usage_usec 2500000\nuser_usec 2000000\n") == 2.5
    with pytest.raises(ValueError):
        cpu_seconds_v2("user_usec 1\n")
    assert parse_proc_stat(_stat(7, 1, 10, 5, 3, 2, 40)) == (1, 20, 40)


def test_a_cgroup_of_its_own_is_read(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {4242: (1, 10**6, 0, 0, 0, 10**6)})
    (proc / "4242" / "cgroup").write_text("0::/machines/loc-1\n")
    group = tmp_path / "cgroup" / "machines" / "loc-1"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 7250000\nuser_usec 7000000\nsystem_usec 250000\n")
    (group / "memory.current").write_text("123456789\n")
    usage = read_usage(4242, cgroup_root=tmp_path / "cgroup", proc=proc)
    assert usage == Usage(cpu_seconds=7.25, memory_bytes=123456789)


def test_without_a_cgroup_of_its_own_the_process_tree_is_summed(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            100: (1, 50, 10, 7, 3, 1000),  # the agent; its reaped children's time included
            101: (100, 200, 20, 0, 0, 5000),  # Vite
            102: (101, 30, 5, 0, 0, 300),  # esbuild, Vite's child
            200: (1, 9999, 9999, 0, 0, 99999),  # someone else's
        },
    )
    # The root cgroup (Fly's VM) has no memory.current: not the machine's own.
    (proc / "100" / "cgroup").write_text("0::/\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.stat").write_text("usage_usec 999000000\n")
    usage = read_usage(100, cgroup_root=root, proc=proc)
    assert usage == Usage((70 + 220 + 35) / TICK, (1000 + 5000 + 300) * PAGE)
    # No cgroup file at all (no cgroup v2): the same.
    (proc / "100" / "cgroup").unlink()
    assert read_usage(100, cgroup_root=root, proc=proc) == usage
    assert tree_usage(999, proc) is None  # gone


def test_this_process_reads_from_the_real_proc() -> None:
    usage = tree_usage(os.getpid())
    assert usage is not None
    assert usage.memory_bytes > 1_000_000  # a Python interpreter's resident set
    assert usage.cpu_seconds > 0
    assert read_usage() is not None


def test_the_frame_leaves_out_what_could_not_be_read() -> None:
    assert stats_frame(3, Usage(1.23456, 42)) == {
        "v": 1,
        "type": "stats",
        "devserverRestarts": 3,
        "cpuSeconds": 1.235,
        "memoryBytes": 42,
    }
    assert stats_frame(0, None) == {"v": 1, "type": "stats", "devserverRestarts": 0}


async def _noop(*_: Any) -> None:
    return None


async def test_the_reporter_sends_on_its_interval_and_right_after_a_restart(
    tmp_path: Path,
) -> None:
    devserver = DevServer(tmp_path, DevServerHooks(_noop, _noop, lambda line: None))
    sent: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        arrived.set()

    reporter = StatsReporter(send, devserver, read=lambda: Usage(1.0, 2), interval=1.0)
    task = asyncio.create_task(reporter.run())
    try:
        async with asyncio.timeout(5):
            await arrived.wait()  # the interval's
        assert sent[0]["devserverRestarts"] == 0
        arrived.clear()
        devserver.restarts += 1
        devserver.restarted.set()
        async with asyncio.timeout(0.5):  # well before the next interval
            await arrived.wait()
        assert sent[-1] == stats_frame(1, Usage(1.0, 2))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

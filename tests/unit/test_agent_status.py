"""The machine's status after a failed write: `error` while writes fail, and what it was before
once one goes through again (unless something else has set the status meanwhile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandbox.agent.logs import LogPump
from sandbox.agent.monitor import DevServerMonitor
from sandbox.agent.protocol import Status


def _monitor(tmp_path: Path, sent: list[dict[str, Any]]) -> DevServerMonitor:
    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return DevServerMonitor(tmp_path, "loc-1", send, LogPump(send), ack_timeout=1.0)


def _statuses(sent: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["state"], m["detail"]) for m in sent if m["type"] == "status"]


async def test_a_cleared_write_error_restores_the_status_before_it(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []
    monitor = _monitor(tmp_path, sent)
    await monitor.set_status(Status.READY, "")

    await monitor.write_failed("could not write patch 4: No space left on device")
    await monitor.write_failed("could not write patch 4: No space left on device")  # resent
    await monitor.write_succeeded()
    await monitor.write_succeeded()  # every later write: nothing more to say

    assert monitor.status is Status.READY
    assert _statuses(sent) == [
        ("ready", ""),
        ("error", "could not write patch 4: No space left on device"),
        ("ready", ""),
    ]


async def test_a_status_set_after_the_write_error_stands(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []
    monitor = _monitor(tmp_path, sent)
    await monitor.set_status(Status.READY, "")
    await monitor.write_failed("could not write patch 7: Read-only file system")
    await monitor.set_status(Status.ERROR, "src/App.jsx:3: Unexpected token")  # a build error

    await monitor.write_succeeded()

    assert (monitor.status, _statuses(sent)[-1]) == (
        Status.ERROR,
        ("error", "src/App.jsx:3: Unexpected token"),
    )


async def test_a_write_error_while_booting_returns_to_booting(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []
    monitor = _monitor(tmp_path, sent)

    await monitor.write_failed("could not write snapshot 2: Input/output error")
    await monitor.write_failed("could not write snapshot 2: Disk quota exceeded")
    await monitor.write_succeeded()

    assert _statuses(sent)[-1] == ("booting", "starting the dev server")

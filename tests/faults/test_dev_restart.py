"""`dev` SIGKILLed, then started again on the same data directory, then stopped (SIGTERM): no
process of either run is left. A `dev` killed outright leaves its embedded Valkey and Postgres
and its local machines running; the next `dev` stops (or takes over) all of them, so its own
exit leaves nothing behind. Real processes: `preview-orchestrator dev` with its embedded stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.helpers import CLI, REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

START_TIMEOUT = 120.0  # the first start creates the embedded Postgres cluster
STOP_TIMEOUT = 60.0


def _dev(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Unset: `dev` starts its embedded stores.
        if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("PREVIEW_")
    }
    env |= {
        "PREVIEW_DATA_DIR": str(data_dir),
        "PREVIEW_LOCAL_PLACEHOLDER": "1",
        "PREVIEW_POOL_MIN": "1",
        "PREVIEW_POOL_MAX": "1",
        "PREVIEW_LOG_LEVEL": "info",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(CLI), "dev", "--host", "127.0.0.1", "--port", str(free_port())],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if '"arq.worker"' not in line)[-6000:]


def _machines(data_dir: Path) -> set[str]:
    machines = data_dir / "machines"
    if not machines.is_dir():
        return set()
    return {p.name for p in machines.iterdir() if p.is_dir() and not p.name.startswith(".")}


def _wait_up(
    process: subprocess.Popen[bytes],
    data_dir: Path,
    log: Path,
    known: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Until this `dev` runs its Valkey (the owner file names it) and has made a machine of its
    own (not in `known`): every kind of process it starts is running."""
    deadline = time.monotonic() + START_TIMEOUT
    owner = data_dir / "valkey" / "owner.json"
    while time.monotonic() < deadline:
        assert process.poll() is None, _tail(log)
        with contextlib.suppress(OSError, ValueError):
            if json.loads(owner.read_text())["pid"] == process.pid and _machines(data_dir) - known:
                return
        time.sleep(0.2)
    raise AssertionError(f"dev did not come up:\n{_tail(log)}")


def _processes_of(data_dir: Path) -> dict[int, str]:
    """Live processes that belong to `data_dir`: named in their command line (machines,
    Postgres) or running in it (Valkey, which renames itself, runs in data_dir/valkey)."""
    root = str(data_dir.resolve())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[:1]
        except OSError:
            continue
        if state != ["Z"] and (root in cmdline or cwd == root or cwd.startswith(root + "/")):
            found[int(entry.name)] = cmdline.strip()
    return found


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is private to this user (0700), and the embedded
    # Postgres runs as a user of its own when started as root.
    path = Path(tempfile.mkdtemp(prefix="po-dev-restart-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for pid in _processes_of(path):  # a failed run's leftovers must not outlive the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def test_a_dev_killed_outright_leaves_nothing_once_the_next_one_stops(
    data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    first = _dev(data_dir, log)
    try:
        _wait_up(first, data_dir, log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    left = _processes_of(data_dir)
    assert any("valkey" in command for command in left.values()), left  # the leak to heal

    second = _dev(data_dir, log)
    try:
        # Its Valkey kept the first one's records (append-only file), so it may adopt the first
        # one's machines rather than make its own: any machine of the directory will do, but it
        # must be serving (else this is the test below).
        _wait_up(second, data_dir, log)
        _wait_for(log, "preview orchestrator is up", count=2)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()
            raise
    deadline = time.monotonic() + 10.0
    while (leaked := _processes_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leaked == {}, f"{leaked}\n{_tail(log)}"
    assert second.returncode in (0, 130), _tail(log)


def test_a_dev_stopped_while_it_starts_still_stops_what_a_killed_one_left(
    data_dir: Path, tmp_path: Path
) -> None:
    """A `dev` killed outright left a machine; the next one is stopped (SIGTERM, as Ctrl-C) as
    soon as its stores are up, before it serves: the machine goes all the same (it lived on
    when the stop came before the web server was up)."""
    log = tmp_path / "dev.log"
    first = _dev(data_dir, log)
    try:
        _wait_up(first, data_dir, log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert any("--machine" in command for command in _processes_of(data_dir).values())

    second = _dev(data_dir, log)
    try:
        # Its stores are up and it prepares the rest (packages, schema, demo user): not serving.
        _wait_for(log, "installing the editor's browser packages", count=2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + 10.0
    while (leaked := _processes_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leaked == {}, f"{leaked}\n{_tail(log)}"


def _wait_for(log: Path, text: str, *, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{_tail(log)}"
        time.sleep(0.1)

"""The operator CLI in a second terminal beside a running `dev`, with no variables set: it finds
`dev`'s embedded stores through PREVIEW_DATA_DIR/dev.json and prints the pool. `dev` logs lines
for people (not JSON, no per-job chatter) and tells how its pool fills. Once `dev` stops, its
file is gone and the CLI says how to point it at stores. Real processes throughout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
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


def _clean_env(data_dir: Path) -> dict[str, str]:
    """A terminal's environment with none of the service's variables but the data directory."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("PREVIEW_")
    }
    return env | {"PREVIEW_DATA_DIR": str(data_dir)}


def _cli(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *argv],
        env=_clean_env(data_dir),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: the embedded Postgres runs as a user of its own as root.
    path = Path(tempfile.mkdtemp(prefix="po-cli-dev-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dev(data_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log = tmp_path / "dev.log"
    env = _clean_env(data_dir) | {
        "PREVIEW_LOCAL_PLACEHOLDER": "1",
        "PREVIEW_TEMPLATES": "react-web",
        "PREVIEW_POOL_MIN": "1",
        "PREVIEW_POOL_MAX": "2",
        "PREVIEW_LOG_LEVEL": "info",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(CLI), "dev", "--host", "127.0.0.1", "--port", str(free_port())],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")[-6000:]
        assert time.monotonic() < deadline, f"no {text!r}:\n{log.read_text()[-6000:]}"
        time.sleep(0.2)


def test_the_cli_beside_a_running_dev_prints_the_pool(
    dev: tuple[subprocess.Popen[bytes], Path], data_dir: Path
) -> None:
    process, log = dev
    _wait_for(log, "preview orchestrator is up", process)
    _wait_for(log, "the warm pool is filled", process)

    beacon = data_dir / "dev.json"
    assert stat.S_IMODE(beacon.stat().st_mode) == 0o600
    assert json.loads(beacon.read_text())["pid"] == process.pid

    status = _cli(data_dir, "pool", "status")
    assert status.returncode == 0, status.stderr
    header, *rows = status.stdout.splitlines()
    assert header.split()[:5] == ["template", "region", "min", "max", "ready"]
    [row] = [r.split() for r in rows if r.startswith("react-web ")]
    assert row[:5] == ["react-web", "local", "1", "2", "1"], status.stdout
    assert f"pid {process.pid}" in status.stderr

    as_json = _cli(data_dir, "pool", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    [pool] = json.loads(as_json.stdout)
    assert (pool["template"], pool["min"], pool["ready"]) == ("react-web", 1, 1)

    # `dev`'s own lines: for people, the pool's fill told, no JSON and no per-job lines.
    lines = log.read_text(errors="replace").splitlines()
    stamped = [line for line in lines if re.match(r"^\d\d:\d\d:\d\d ", line)]
    assert stamped, lines
    assert not any(line.startswith("{") for line in lines)
    assert any(re.search(r" dev: pool react-web/local: 1/1 ready$", line) for line in stamped)
    assert any("the first preview machine is ready (react-web/local)" in line for line in lines)
    assert not any(re.search(r"\d+\.\d\ds [→←] ", line) for line in lines)

    process.send_signal(signal.SIGTERM)
    process.wait(STOP_TIMEOUT)
    assert not beacon.exists()
    after = _cli(data_dir, "pool", "status")
    assert after.returncode == 2
    assert "no `dev` is running on" in after.stderr and "DATABASE_URL" in after.stderr

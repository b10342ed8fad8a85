"""The TypeScript client's handling of a store reset (tests/ui/connection_epochs.mjs), run on
its compiled output by Node: the mirror of files, the re-send under the new epoch, two tabs,
and re-sent frames kept under the frame cap; and of binary files (tests/ui/connection_binary.mjs):
bytes sent as base64, malformed ones refused, binary kept binary in the mirror."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["connection_epochs.mjs", "connection_binary.mjs"])
def test_the_client_resends_its_files_after_a_store_reset(script: str) -> None:
    node = shutil.which("node")
    assert node, "Node is a prerequisite of the test suite (README)"
    done = subprocess.run(
        [node, str(REPO / "tests" / "ui" / script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"

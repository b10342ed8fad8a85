"""The TypeScript client's handling of a store reset (tests/ui/connection_epochs.mjs), run on
its compiled output by Node: the mirror of files, the re-send under the new epoch, two tabs,
and re-sent frames kept under the frame cap."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_client_resends_its_files_after_a_store_reset() -> None:
    node = shutil.which("node")
    assert node, "Node is a prerequisite of the test suite (README)"
    done = subprocess.run(
        [node, str(REPO / "tests" / "ui" / "connection_epochs.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"

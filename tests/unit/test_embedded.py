"""`dev`'s embedded Postgres: a process killed outright must not keep the cluster alive."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from app.embedded import _forget_dead_handles


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_dead_holders_are_forgotten_and_live_ones_kept(tmp_path: Path) -> None:
    handles = tmp_path / ".handle_pids.json"
    handles.write_text(json.dumps([_dead_pid(), os.getpid(), _dead_pid()]))

    _forget_dead_handles(tmp_path)

    assert json.loads(handles.read_text()) == [os.getpid()]


def test_a_missing_or_foreign_file_is_left_alone(tmp_path: Path) -> None:
    _forget_dead_handles(tmp_path)  # no file: nothing to do
    assert not (tmp_path / ".handle_pids.json").exists()
    (tmp_path / ".handle_pids.json").write_text("not json")
    _forget_dead_handles(tmp_path)
    assert (tmp_path / ".handle_pids.json").read_text() == "not json"

"""`dev`'s embedded Postgres: a process killed outright must not keep the cluster alive."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from app.embedded import VALKEY_OWNER, _forget_dead_handles, stop_orphaned_valkey


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


def test_a_valkey_whose_dev_is_alive_is_not_stopped(tmp_path: Path) -> None:
    owner = tmp_path / VALKEY_OWNER
    owner.write_text(json.dumps({"pid": os.getpid(), "port": 1}))

    assert stop_orphaned_valkey(tmp_path) is False
    assert owner.exists()  # another `dev` runs on this directory: its file stays


def test_a_stale_owner_file_with_nothing_behind_it_is_dropped(tmp_path: Path) -> None:
    owner = tmp_path / VALKEY_OWNER
    owner.write_text(json.dumps({"pid": _dead_pid(), "port": 1}))  # nothing listens on port 1

    assert stop_orphaned_valkey(tmp_path) is False
    assert not owner.exists()
    owner.write_text("not json")
    assert stop_orphaned_valkey(tmp_path) is False

"""What `dev` and the operator commands show a person: human log lines (arq's per-job lines
quieted), the pool fill's progress, aligned tables, and dev.json (app/dev_beacon.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli_tables import render_table
from app.dev_beacon import BEACON, DevBeacon, announced, find_running_dev
from app.dev_progress import Fill, progress_lines
from app.pool_admin import merge_change
from app.settings import load_settings
from pool.core import logs
from pool.store.inventory import PoolKey
from sql.pool_targets import PoolTarget


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger as `dev` configures it, writing into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    # uvicorn's loggers as `dev` leaves them (it runs uvicorn with log_config=None): a test that
    # ran uvicorn with its default config before gave them handlers of their own and stopped
    # their propagation, and their lines would never reach the root.
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error")]
    uvicorn_saved = [(lg.handlers[:], lg.propagate) for lg in uvicorn_loggers]
    for logger in uvicorn_loggers:
        logger.handlers[:], logger.propagate = [], True
    out = io.StringIO()
    logs.configure_logging("info", human=True)
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        yield out
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for logger, (handlers, propagate) in zip(uvicorn_loggers, uvicorn_saved, strict=True):
            logger.handlers[:], logger.propagate = handlers, propagate


def test_dev_lines_are_for_people_and_carry_the_context_ids(captured: io.StringIO) -> None:
    token = logs.session_id.set("s-1")
    machine = logs.machine_id.set("loc-2")
    try:
        logging.getLogger("pool.services.refill").info("made %d machines", 2)
        logging.getLogger("uvicorn.error").warning(
            '"WebSocket /api/preview/sessions/a/ws?token=s3cr3t" [accepted]'
        )
    finally:
        logs.session_id.reset(token)
        logs.machine_id.reset(machine)
    first, second = captured.getvalue().splitlines()
    # "HH:MM:SS refill: made 2 machines  [session=s-1 machine=loc-2]"; INFO goes unsaid.
    assert first[8:] == " refill: made 2 machines  [session=s-1 machine=loc-2]"
    assert first[2] == first[5] == ":"
    assert " WARNING uvicorn: " in second and "s3cr3t" not in second
    with pytest.raises(ValueError):
        json.loads(first)


@pytest.mark.parametrize(
    ("message", "args", "shown"),
    [
        ("%6.2fs → %s(%s)%s", (0.01, "cron:reap", "", ""), False),
        ("%6.2fs ← %s ● %s", (0.02, "cron:reap", "None"), False),
        ("recording health: %s", ("j_complete=5",), False),
        ("%6.2fs ! %s max retries %d exceeded", (0.1, "resize", 3), True),
        ("Starting worker for %d functions: %s", (3, "resize"), True),
    ],
)
def test_arq_job_chatter_becomes_debug_and_the_rest_stays(
    captured: io.StringIO, message: str, args: tuple[object, ...], shown: bool
) -> None:
    logging.getLogger("arq.worker").info(message, *args)
    assert bool(captured.getvalue()) is shown


def test_arq_job_lines_show_at_debug() -> None:
    record = logging.LogRecord("arq.worker", logging.INFO, "", 0, "%6.2fs → %s", (0.1, "x"), None)
    assert logs.QuietJobLines(logging.DEBUG).filter(record)
    assert record.levelname == "DEBUG"


def test_production_lines_stay_json() -> None:
    record = logging.LogRecord("app", logging.INFO, "", 0, "hello %s", ("you",), None)
    assert json.loads(logs.JsonFormatter().format(record))["message"] == "hello you"


A, B = PoolKey("react-web", "local"), PoolKey("react-native-web", "local")


@pytest.mark.parametrize(
    ("before", "now", "first_seen", "said", "seen"),
    [
        ({}, {A: Fill(A, 0, 0, 2)}, False, ["pool react-web/local: 0/2 ready"], False),
        (
            {A: Fill(A, 0, 0, 2)},
            {A: Fill(A, 0, 2, 2)},
            False,
            ["pool react-web/local: 0/2 ready (2 booting)"],
            False,
        ),
        (
            {A: Fill(A, 0, 2, 2), B: Fill(B, 0, 1, 1)},
            {A: Fill(A, 1, 1, 2), B: Fill(B, 0, 1, 1)},
            False,
            [
                "pool react-web/local: 1/2 ready (1 booting)",
                "the first preview machine is ready (react-web/local) after 3.5 s",
            ],
            True,
        ),
        (
            {A: Fill(A, 1, 1, 2), B: Fill(B, 1, 0, 1)},
            {A: Fill(A, 2, 0, 2), B: Fill(B, 1, 0, 1)},
            True,
            ["pool react-web/local: 2/2 ready", "the warm pool is filled after 3.5 s"],
            True,
        ),
        ({A: Fill(A, 1, 0, 2)}, {A: Fill(A, 1, 0, 2)}, True, [], True),
    ],
)
def test_the_pool_fill_is_told_as_it_changes(
    before: dict[PoolKey, Fill],
    now: dict[PoolKey, Fill],
    first_seen: bool,
    said: list[str],
    seen: bool,
) -> None:
    assert progress_lines(before, now, first_seen=first_seen, elapsed=3.5) == (said, seen)


def test_tables_align_text_left_and_numbers_right() -> None:
    rows = [
        {"template": "react-web", "min": 2, "hitRatio": 0.5},
        {"template": "react-native-web", "min": 10, "hitRatio": None},
    ]
    assert render_table(rows, ["template", "min", "hitRatio"]).splitlines() == [
        "template          min  hitRatio",
        "react-web           2      0.50",
        "react-native-web   10         -",
    ]
    assert render_table([], ["sessionId", "status"]).splitlines() == [
        "sessionId  status",
        "(none)",
    ]


@pytest.mark.parametrize(
    ("change", "stored", "merged"),
    [
        ({"max": 5}, PoolTarget("t", "r", 1, 3), {"min": 1, "max": 5}),
        (
            {"guest": {"cpus": 2}},
            PoolTarget("t", "r", 1, 3),
            {"min": 1, "max": 3, "guest": {"cpus": 2}},
        ),
        ({"min": 4}, None, {"min": 4, "max": 10}),
        ({}, None, {"min": 2, "max": 10}),
    ],
)
def test_a_partial_change_keeps_the_stored_hot_bounds(
    change: dict[str, object], stored: PoolTarget | None, merged: dict[str, object]
) -> None:
    assert merge_change(change, stored, (2, 10)) == merged


def test_dev_json_is_private_names_the_stores_and_goes_with_dev(tmp_path: Path) -> None:
    settings = load_settings(
        database_url="postgresql://u@h/db",
        redis_url="redis://h:1/0",
        preview_data_dir=tmp_path,
        preview_templates="react-web",
    )
    with announced(settings, 8123):
        path = tmp_path / BEACON
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        found = find_running_dev(tmp_path)
        assert found is not None
        assert (found.pid, found.port) == (os.getpid(), 8123)
        assert (found.database_url, found.redis_url) == ("postgresql://u@h/db", "redis://h:1/0")
        assert found.settings["preview_templates"] == "react-web"
    assert not path.exists()
    assert find_running_dev(tmp_path) is None


def test_a_dead_devs_file_is_not_trusted(tmp_path: Path) -> None:
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    (tmp_path / BEACON).write_text(
        json.dumps({"pid": dead, "port": 1, "database_url": "x", "redis_url": "y"})
    )
    assert find_running_dev(tmp_path) is None
    (tmp_path / BEACON).write_text("{not json")
    assert find_running_dev(tmp_path) is None


def test_a_command_takes_from_dev_only_what_its_environment_leaves_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("PREVIEW_") or name in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(name)
    beacon = DevBeacon(
        pid=1,
        port=2,
        database_url="postgresql://dev/db",
        redis_url="redis://dev:1/0",
        settings={"preview_templates": "react-web", "preview_pool_min": 1, "unrelated": "x"},
    )
    own = load_settings(redis_url="redis://mine:1/0", preview_pool_min=0)
    assert beacon.overrides(own) == {
        "preview_templates": "react-web",
        "database_url": "postgresql://dev/db",
    }

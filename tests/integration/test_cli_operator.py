"""The operator commands against real stores: `pool set` partial changes, `pool delete`,
`sessions list|show|end`, `--json`, and bad input (exit status 2, what was wrong, nothing
changed). And how they find their stores: the environment, a running `dev`'s dev.json, or a
message saying how to point them at stores."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from app import cli
from app.dev_beacon import BEACON
from app.server import create_app
from app.settings import Settings
from tests.conftest import JWT_SECRET, TOKEN_SECRET, User, fill_pool, make_user

REGION = "ams"


@pytest.fixture
def tuned(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings as the CLI loads them from its environment."""
    for name in list(os.environ):
        if name.startswith("PREVIEW_"):
            monkeypatch.delenv(name)
    for name, value in {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(settings.preview_data_dir),
        "PREVIEW_REGIONS": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    return settings.model_copy(update={"preview_regions": REGION})


@pytest.fixture
def client(tuned: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tuned)) as test_client:
        yield test_client


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(settings: Settings, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        return conn.execute(query).fetchall()


def _targets(settings: Settings) -> list[tuple[object, ...]]:
    return _rows(
        settings,
        "SELECT template, region, min_size, max_size, stopped_max, guest_cpus, guest_memory_mb"
        " FROM pool_targets ORDER BY 1, 2",
    )


def _sessions(settings: Settings) -> list[tuple[object, ...]]:
    return _rows(
        settings, "SELECT id, status, end_reason FROM preview_sessions ORDER BY created_at, id"
    )


# -- pool set: a partial change keeps the rest ------------------------------------------------


def test_pool_set_changes_only_what_it_is_given(
    tuned: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Never set: the minimum it leaves out is the configured default (PREVIEW_POOL_MIN).
    assert _run(capsys, "pool", "set", "react-web", REGION, "--max", "4")[0] == 0
    default_min = tuned.preview_pool_min
    assert _targets(tuned) == [("react-web", REGION, default_min, 4, 0, None, None)]

    assert _run(capsys, "pool", "set", "react-web", REGION, "--min", "1")[0] == 0
    code, out, _ = _run(capsys, "pool", "set", "react-web", REGION, "--guest", "2", "2048")
    assert code == 0 and "react-web/ams: hot 1-4" in out
    assert _targets(tuned) == [("react-web", REGION, 1, 4, 0, 2, 2048)]

    code, out, _ = _run(capsys, "pool", "set", "react-web", REGION, "--max", "6", "--json")
    answer = json.loads(out)
    assert code == 0
    assert (answer["min"], answer["max"], answer["guest"]) == (1, 6, {"cpus": 2, "memoryMb": 2048})
    assert answer["rolling"] is False  # the local provider resizes no machine in place


@pytest.mark.parametrize(
    ("case", "args", "code", "words"),
    [
        ("a min over the stored max", ["--min", "9"], "invalid_body", "min (9) must not exceed"),
        ("nothing to change", [], "nothing_to_change", "give at least one"),
        ("a tier the local provider lacks", ["--stopped", "0", "2"], "unsupported_option", "hot"),
        ("the other one", ["--suspended", "1", "1"], "unsupported_option", "suspended bounds"),
    ],
)
def test_pool_set_refuses_and_changes_nothing(
    tuned: Settings,
    capsys: pytest.CaptureFixture[str],
    case: str,
    args: list[str],
    code: str,
    words: str,
) -> None:
    assert _run(capsys, "pool", "set", "react-web", REGION, "--min", "1", "--max", "3")[0] == 0
    before = _targets(tuned)

    exit_code, out, err = _run(capsys, "pool", "set", "react-web", REGION, *args)

    assert exit_code == 2 and out == ""
    assert err.startswith(f"preview-orchestrator: refused ({code}): "), err
    assert words in err and "configuration error" not in err
    assert _targets(tuned) == before


# -- pool delete -------------------------------------------------------------------------------


def test_pool_delete_removes_a_pool_as_the_api_does(
    tuned: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "pool", "set", "react-web", REGION, "--min", "1", "--max", "3")[0] == 0

    code, out, _ = _run(capsys, "pool", "delete", "react-web", REGION, "--json")

    assert code == 0
    assert json.loads(out) == {
        "template": "react-web",
        "region": REGION,
        "min": 0,
        "max": 0,
        "removed": True,
    }
    assert _targets(tuned) == [("react-web", REGION, 0, 0, 0, None, None)]
    code, out, _ = _run(capsys, "pool", "status")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:4] == ["template", "region", "min", "max"]
    assert code == 0 and ["react-web", REGION, "0", "0"] in [row[:4] for row in rows]


@pytest.mark.parametrize(
    ("args", "code", "words", "status"),
    [
        (["react-web", "mars"], "unknown_pool", "no pool react-web/mars", 404),
        (["React", REGION], "invalid_pool", "template and region are lowercase names", 400),
    ],
)
def test_pool_delete_refuses_a_pool_nobody_made(
    tuned: Settings,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: str,
    words: str,
    status: int,
) -> None:
    assert _run(capsys, "pool", "set", "react-web", REGION, "--min", "1", "--max", "3")[0] == 0
    before = _targets(tuned)
    admin = make_user(tuned.database_url or "", admin=True)

    exit_code, _, err = _run(capsys, "pool", "delete", *args)
    api = client.delete(f"/api/admin/pool/{args[0]}/{args[1]}", headers=admin.headers)

    assert exit_code == 2
    assert err.startswith(f"preview-orchestrator: refused ({code}): {words}"), err
    assert api.status_code == status, api.text  # the same refusal through the API
    assert _targets(tuned) == before


# -- sessions ----------------------------------------------------------------------------------


def _lease(client: TestClient, user: User) -> str:
    answer = client.post(
        "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
    )
    assert answer.status_code == 201, answer.text
    session_id: str = answer.json()["id"]
    return session_id


def test_sessions_list_show_and_end(
    tuned: Settings, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_pool(2)
    alice, bob = make_user(tuned.database_url or ""), make_user(tuned.database_url or "")
    first, second = _lease(client, alice), _lease(client, bob)

    code, out, _ = _run(capsys, "sessions", "list", "--json")
    listed = json.loads(out)["sessions"]
    assert code == 0
    assert [s["sessionId"] for s in listed] == [second, first]  # newest first
    assert {s["status"] for s in listed} == {"active"}

    code, out, _ = _run(capsys, "sessions", "list", "--user", str(alice.id))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["sessionId", "status"]
    assert [line.split()[0] for line in lines[1:]] == [first]
    email = _rows(tuned, f"SELECT email FROM auth.users WHERE id = '{bob.id}'")[0][0]
    code, out, _ = _run(capsys, "sessions", "list", "--user", str(email), "--json")
    assert [s["sessionId"] for s in json.loads(out)["sessions"]] == [second]

    code, out, _ = _run(capsys, "sessions", "show", first, "--json")
    shown = json.loads(out)
    recorded = _rows(
        tuned, f"SELECT kind FROM session_events WHERE session_id = '{first}' ORDER BY at, id"
    )
    assert code == 0 and shown["sessionId"] == first and shown["machineId"]
    assert [e["kind"] for e in shown["events"]] == [kind for (kind,) in recorded]
    assert recorded, "the lease records at least one event"

    code, out, _ = _run(capsys, "sessions", "end", first)
    assert code == 0 and "ended" in out
    assert (uuid.UUID(first), "ended", "ended_by_operator") in _sessions(tuned)
    # Its machine went back to the pool's care (released, to be recycled); bob's is untouched.
    leases = _rows(
        tuned, "SELECT session_id::text, released_at IS NOT NULL FROM machine_leases ORDER BY 1"
    )
    assert sorted(leases) == sorted([(first, True), (second, False)])

    code, out, _ = _run(capsys, "sessions", "end", first, "--json")
    assert code == 0 and json.loads(out) == {
        "sessionId": first,
        "ended": False,
        "status": "ended",
        "endReason": "ended_by_operator",
    }
    code, out, _ = _run(capsys, "sessions", "list", "--status", "active", "--json")
    assert [s["sessionId"] for s in json.loads(out)["sessions"]] == [second]
    # The text view of one session: its fields, then its events.
    code, out, _ = _run(capsys, "sessions", "show", first)
    assert code == 0 and f"sessionId     {first}" in out and "ended_by_operator" in out


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["sessions", "show", "not-a-uuid"], "invalid_session", "'not-a-uuid' is not a session id"),
        (["sessions", "end", "12345"], "invalid_session", "'12345' is not a session id"),
        (["sessions", "show", str(uuid.UUID(int=7))], "unknown_session", "no session"),
        (["sessions", "end", str(uuid.UUID(int=7))], "unknown_session", "no session"),
        (["sessions", "list", "--status", "gone"], "invalid_status", "unknown status 'gone'"),
        (["sessions", "list", "--limit", "0"], "invalid_limit", "limit must be 1 to"),
        (["sessions", "list", "--project", "p1"], "invalid_project", "'p1' is not a project id"),
        (["sessions", "list", "--user", "x@nowhere.test"], "unknown_user", "no user with"),
    ],
)
def test_sessions_refuse_bad_input_and_change_nothing(
    tuned: Settings,
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: str,
    words: str,
) -> None:
    fill_pool(1)
    _lease(client, make_user(tuned.database_url or ""))
    before = _sessions(tuned)

    exit_code, out, err = _run(capsys, *argv)

    assert exit_code == 2 and out == ""
    assert err.startswith(f"preview-orchestrator: refused ({code}): {words}"), err
    assert _sessions(tuned) == before


# -- finding the stores ------------------------------------------------------------------------


def test_without_stores_or_a_dev_the_command_says_how_to_point_it_at_stores(
    tuned: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")

    code, out, err = _run(capsys, "pool", "status")

    assert code == 2 and out == ""
    assert "no `dev` is running on" in err
    assert "set DATABASE_URL and REDIS_URL" in err and "PREVIEW_DATA_DIR" in err


def test_beside_a_running_dev_the_command_uses_its_stores(
    tuned: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """dev.json of a live process (this one stands in for `dev`) points at the test's stores
    and names the pool configuration `dev` runs with."""
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("REDIS_URL")
    data_dir = Path(tuned.preview_data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / BEACON).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "port": 1,
                "database_url": tuned.database_url,
                "redis_url": tuned.redis_url,
                "settings": {"preview_templates": "react-native-web", "preview_pool_min": 3},
            }
        )
    )

    code, out, err = _run(capsys, "pool", "status", "--json")

    assert code == 0, err
    assert f"pid {os.getpid()}" in err
    assert [(r["template"], r["min"]) for r in json.loads(out)] == [("react-native-web", 3)]

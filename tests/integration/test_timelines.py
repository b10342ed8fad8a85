"""Session timelines on real Postgres and Redis: the stages the lease path, the preview's render
report and the end write; the routes that read them (admins, the owner); stage percentiles
against rows inserted with known times; and bad input refused with nothing changed."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from sql.latency import LatencyHistogram
from sql.stages import STAGES
from sql.timelines import add_edit_latency
from tests.conftest import User, fill_pool, make_user

RENDER = "/__preview/render"


def _lease(client: TestClient, user: User) -> dict[str, Any]:
    created = client.post(
        "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _preview(session: dict[str, Any]) -> dict[str, str]:
    return {"host": f"{session['id']}.preview.localhost:8000"}


def _events(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT session_id, kind, at, detail FROM session_events ORDER BY id"
        ).fetchall()


def test_a_session_timeline_has_its_stages_in_order(settings: Settings) -> None:
    user, admin = (
        make_user(settings.database_url or ""),
        make_user(settings.database_url or "", admin=True),
    )
    fill_pool(1)
    with TestClient(create_app(settings)) as client:
        session = _lease(client, user)
        client.cookies.set("preview_token", session["token"])
        rendered = client.post(RENDER, json={"sinceNavigationMs": 812.5}, headers=_preview(session))
        assert rendered.status_code == 204, rendered.text
        # A reload reports again: the first report stays.
        again = client.post(RENDER, json={"sinceNavigationMs": 99}, headers=_preview(session))
        assert again.status_code == 204
        client.cookies.clear()
        assert client.delete(f"/api/preview/sessions/{session['id']}", headers=user.headers)
        own = client.get(f"/api/preview/sessions/{session['id']}/timeline", headers=user.headers)
        seen = client.get(f"/api/admin/sessions/{session['id']}/timeline", headers=admin.headers)
    assert own.status_code == 200 and seen.status_code == 200, (own.text, seen.text)
    timeline = seen.json()
    assert own.json() == timeline
    stages = timeline["stages"]
    assert [s["stage"] for s in stages] == [
        "requested",
        "leased",
        "machine_ready",
        "first_render",
        "ended",
    ]
    assert stages[0]["sinceRequestedMs"] == 0
    elapsed = [s["sinceRequestedMs"] for s in stages]
    assert elapsed == sorted(elapsed) and elapsed[1] > 0  # the lease took some time
    assert [datetime.fromisoformat(s["at"]) for s in stages] == sorted(
        datetime.fromisoformat(s["at"]) for s in stages
    )
    assert stages[1]["detail"]["kind"] == "hot" and timeline["leaseKind"] == "hot"
    assert stages[2]["detail"] == {"machine": session["machineId"], "via": "hot"}
    assert stages[3]["detail"] == {"sinceNavigationMs": 812.5}
    assert stages[4]["detail"] == {"reason": "deleted", "status": "ended"}
    assert (timeline["status"], timeline["endReason"]) == ("ended", "deleted")
    assert (timeline["userId"], timeline["projectId"]) == (str(user.id), str(user.project_id))
    assert timeline["edits"] == {
        "count": 0,
        "ackP50Ms": None,
        "ackP95Ms": None,
        "ackMaxMs": None,
        "appliedP50Ms": None,
        "appliedP95Ms": None,
        "appliedMaxMs": None,
    }


def test_the_render_report_refuses_hostile_input_and_records_nothing(
    settings: Settings,
) -> None:
    user = make_user(settings.database_url or "")
    fill_pool(2)
    with TestClient(create_app(settings)) as client:
        session, other = _lease(client, user), _lease(client, user)
        before = _events(settings.database_url or "")
        host = _preview(session)
        # No cookie; then another session's token for this session's origin.
        assert client.post(RENDER, json={}, headers=host).status_code == 401
        client.cookies.set("preview_token", other["token"])
        assert client.post(RENDER, json={}, headers=host).status_code == 403
        client.cookies.set("preview_token", session["token"])
        refused = {
            "oversized": client.post(
                RENDER, content=b'{"sinceNavigationMs": 1' + b" " * 2000 + b"}", headers=host
            ),
            "not JSON": client.post(RENDER, content=b"{nope", headers=host),
            "unknown field": client.post(RENDER, json={"stage": "ended"}, headers=host),
            "negative": client.post(RENDER, json={"sinceNavigationMs": -1}, headers=host),
            "boolean": client.post(RENDER, json={"sinceNavigationMs": True}, headers=host),
            "GET": client.get(RENDER, headers=host),
            "another site": client.post(
                RENDER, json={}, headers={**host, "origin": "https://evil.example"}
            ),
        }
        statuses = {name: answer.status_code for name, answer in refused.items()}
        assert statuses == {
            "oversized": 413,
            "not JSON": 400,
            "unknown field": 400,
            "negative": 400,
            "boolean": 400,
            "GET": 405,
            "another site": 403,
        }
        assert refused["GET"].headers["allow"] == "POST"
        assert _events(settings.database_url or "") == before
        # The preview's own page, with its cookie: recorded for this session only.
        own_origin = {**host, "origin": f"http://{host['host']}"}
        assert client.post(RENDER, json={}, headers=own_origin).status_code == 204
    after = _events(settings.database_url or "")
    added = [e for e in after if e not in before]
    assert [(str(e[0]), e[1]) for e in added] == [(session["id"], "first_render")]


def test_the_owner_route_hides_other_users_sessions_and_admin_routes_need_an_admin(
    settings: Settings,
) -> None:
    database = settings.database_url or ""
    owner, stranger = make_user(database), make_user(database)
    fill_pool(1)
    with TestClient(create_app(settings)) as client:
        session = _lease(client, owner)
        before = _events(database)
        theirs = client.get(
            f"/api/preview/sessions/{session['id']}/timeline", headers=stranger.headers
        )
        assert (theirs.status_code, theirs.json()["error"]) == (404, "not_found")
        for path in (
            f"/api/admin/sessions/{session['id']}/timeline",
            "/api/admin/sessions",
            "/api/admin/stats",
        ):
            answer = client.get(path, headers=owner.headers)
            assert answer.status_code == 403, path
            assert client.get(path).status_code == 401, path
        assert _events(database) == before


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/admin/sessions/not-a-uuid/timeline", 400, "invalid_id"),
        (f"/api/admin/sessions/{uuid.UUID(int=7)}/timeline", 404, "not_found"),
        ("/api/preview/sessions/0000/timeline", 400, "invalid_id"),
        ("/api/admin/sessions?limit=0", 400, "invalid_query"),
        ("/api/admin/sessions?limit=201", 400, "invalid_query"),
        ("/api/admin/sessions?limit=ten", 400, "invalid_query"),
        ("/api/admin/sessions?q=a%00b", 400, "invalid_query"),
        ("/api/admin/sessions?q=a&q=b", 400, "invalid_query"),
        ("/api/admin/sessions?user=x", 400, "invalid_query"),
        ("/api/admin/stats?since=yesterday", 400, "invalid_query"),
        ("/api/admin/stats?since=-5", 400, "invalid_query"),
        ("/api/admin/stats?since=2999-01-01T00:00:00Z", 400, "invalid_query"),
        ("/api/admin/stats?since=2024-02-30T00:00:00Z", 400, "invalid_query"),
    ],
)
def test_bad_input_gets_a_clear_error(
    settings: Settings, path: str, status: int, code: str
) -> None:
    database = settings.database_url or ""
    admin = make_user(database, admin=True)
    before = _events(database)
    with TestClient(create_app(settings)) as client:
        answer = client.get(path, headers=admin.headers)
    assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text
    assert answer.json()["message"]
    assert _events(database) == before


def test_search_finds_sessions_by_any_of_their_ids_or_the_users_email(
    settings: Settings,
) -> None:
    database = settings.database_url or ""
    admin, alice, bob = (
        make_user(database, admin=True),
        make_user(database),
        make_user(database),
    )
    fill_pool(3)
    with TestClient(create_app(settings)) as client:
        first, second = _lease(client, alice), _lease(client, alice)
        bobs = _lease(client, bob)
        with psycopg.connect(database) as conn:
            email = conn.execute("SELECT email FROM auth.users WHERE id = %s", (alice.id,))
            alice_email = str(email.fetchone()[0])  # type: ignore[index]

        def ids(query: str) -> list[str]:
            answer = client.get(f"/api/admin/sessions{query}", headers=admin.headers)
            assert answer.status_code == 200, answer.text
            return [s["sessionId"] for s in answer.json()["sessions"]]

        newest_first = [second["id"], first["id"]]
        assert ids(f"?q={alice.id}") == newest_first
        assert ids(f"?q={alice.project_id}") == newest_first
        assert ids(f"?q={alice_email.upper()}") == newest_first
        assert ids(f"?q={bobs['id']}") == [bobs["id"]]
        assert ids("?q=nobody@example.test") == []
        assert ids("?limit=2") == [bobs["id"], second["id"]]
        assert len(ids("")) == 3
        listed = client.get(f"/api/admin/sessions?q={bobs['id']}", headers=admin.headers)
    assert listed.json()["sessions"][0] == {
        "sessionId": bobs["id"],
        "userId": str(bob.id),
        "projectId": str(bob.project_id),
        "template": "react-web",
        "region": "local",
        "status": "active",
        "createdAt": listed.json()["sessions"][0]["createdAt"],
    }


def _percentile_cont(values: list[float], fraction: float) -> float:
    """Postgres's percentile_cont, written out: linear interpolation at fraction * (n - 1)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _insert_session(
    conn: psycopg.Connection[Any],
    user: User,
    template: str,
    kind: str,
    offsets_ms: dict[str, float],
    requested: datetime,
) -> None:
    session_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO preview_sessions (id, project_id, user_id, status, template, created_at)
           VALUES (%s, %s, %s, 'active', %s, %s)""",
        (session_id, user.project_id, user.id, template, requested),
    )
    for stage, ms in {"requested": 0.0, **offsets_ms}.items():
        detail = {"kind": kind} if stage == "leased" else {}
        conn.execute(
            "INSERT INTO session_events (session_id, kind, at, detail) VALUES (%s, %s, %s, %s)",
            (session_id, stage, requested + timedelta(milliseconds=ms), Jsonb(detail)),
        )


def test_stats_give_each_stages_percentiles_per_template_region_and_lease_kind(
    settings: Settings,
) -> None:
    database = settings.database_url or ""
    admin, user = make_user(database, admin=True), make_user(database)
    now = datetime.now(UTC)
    hot_ready = [3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0]
    stopped_ready = [480.0, 620.0, 1500.0]
    render = [900.0, 1100.0, 1300.0, 4000.0, 800.0, 2500.0, 1900.0]
    with psycopg.connect(database, autocommit=True) as conn:
        for ready, rendered in zip(hot_ready, render, strict=True):
            offsets = {"leased": 2.0, "machine_ready": ready, "first_render": rendered}
            _insert_session(conn, user, "react-web", "hot", offsets, now - timedelta(minutes=5))
        for ready in stopped_ready:
            offsets = {"leased": 4.0, "machine_ready": ready}
            _insert_session(
                conn, user, "react-native-web", "stopped", offsets, now - timedelta(minutes=9)
            )
        # Older than `since`: left out.
        _insert_session(
            conn, user, "react-web", "hot", {"machine_ready": 9999.0}, now - timedelta(hours=3)
        )
    with TestClient(create_app(settings)) as client:
        answer = client.get("/api/admin/stats?since=3600", headers=admin.headers)
        iso = (now - timedelta(minutes=7)).isoformat().replace("+00:00", "Z")
        later = client.get("/api/admin/stats", params={"since": iso}, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert abs(datetime.fromisoformat(body["since"]) - (now - timedelta(hours=1))) < timedelta(
        seconds=30
    )
    groups = {(g["template"], g["region"], g["leaseKind"]): g for g in body["groups"]}
    assert set(groups) == {("react-web", "local", "hot"), ("react-native-web", "local", "stopped")}
    hot = groups[("react-web", "local", "hot")]
    stopped = groups[("react-native-web", "local", "stopped")]
    assert (hot["sessions"], stopped["sessions"]) == (7, 3)
    assert list(hot["stages"]) == ["requested", "leased", "machine_ready", "first_render"]
    assert list(stopped["stages"]) == ["requested", "leased", "machine_ready"]
    for group, stage, values in (
        (hot, "machine_ready", hot_ready),
        (hot, "first_render", render),
        (stopped, "machine_ready", stopped_ready),
    ):
        got = group["stages"][stage]
        assert got["n"] == len(values)
        for key, fraction in (("p50Ms", 0.5), ("p95Ms", 0.95), ("p99Ms", 0.99)):
            assert got[key] == pytest.approx(_percentile_cont(values, fraction), abs=0.1), (
                stage,
                key,
            )
    assert hot["stages"]["requested"] == {"n": 7, "p50Ms": 0, "p95Ms": 0, "p99Ms": 0}
    # An ISO-8601 `since` 7 minutes ago keeps only the sessions of 5 minutes ago.
    assert [g["leaseKind"] for g in later.json()["groups"]] == ["hot"]


async def test_edit_latency_summaries_add_up_across_sockets(settings: Settings) -> None:
    database = settings.database_url or ""
    user = make_user(database)
    session_id = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await conn.execute(
            """INSERT INTO preview_sessions (id, project_id, user_id, status)
               VALUES (%s, %s, %s, 'active')""",
            (session_id, user.project_id, user.id),
        )
        first_ack, first_applied = LatencyHistogram(), LatencyHistogram()
        second_ack, second_applied = LatencyHistogram(), LatencyHistogram()
        for ms in (1.5, 2.0, 2.5, 40.0):
            first_ack.add(ms)
            first_applied.add(ms * 10)
        for ms in (3.0, 700.0):
            second_ack.add(ms)
        second_applied.add(90.0)
        assert await add_edit_latency(conn, session_id, first_ack, first_applied)
        assert await add_edit_latency(conn, session_id, second_ack, second_applied)
        assert not await add_edit_latency(conn, uuid.uuid4(), first_ack, first_applied)
    admin = make_user(database, admin=True)

    def read() -> dict[str, Any]:
        with TestClient(create_app(settings)) as client:
            answer = client.get(f"/api/admin/sessions/{session_id}/timeline", headers=admin.headers)
        assert answer.status_code == 200, answer.text
        edits: dict[str, Any] = answer.json()["edits"]
        return edits

    edits = await asyncio.to_thread(read)
    # Six acks: 1.5 2 2.5 3 40 700 → the 3rd is 2.5 (bucket bound 3), the 6th 700 (bound 800,
    # capped by the max). Five applied: 15 20 25 90 400.
    assert edits == {
        "count": 6,
        "ackP50Ms": 3.0,
        "ackP95Ms": 700.0,
        "ackMaxMs": 700.0,
        "appliedP50Ms": 25.0,
        "appliedP95Ms": 400.0,
        "appliedMaxMs": 400.0,
    }


def test_the_migration_names_the_stages_the_code_writes(settings: Settings) -> None:
    with psycopg.connect(settings.database_url or "") as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'session_events_one_stage'"
        ).fetchone()
    assert definition is not None
    assert all(f"'{stage}'" in definition[0] for stage in STAGES)

"""The A/B report on real Postgres: a small known dataset in both arms' tables (the new system's
timelines, edit histograms and fallbacks; the Appetize arm's sessions and panel events), and
every figure checked against numbers computed here by hand: medians, means, Student-t and
Welch CIs (df = 8: both arms have the same variance, so the t table and the closed form of
Student's t for even df apply), the exact Mann-Whitney p-values, the exact bootstrap
distribution of a median of five, Wilson and Newcombe intervals and the two-proportion z-test.
Then the CLI prints the same document, and bad input (`since` malformed or in the future, a
user who is not an admin) is refused with nothing changed."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from app import cli
from app.server import create_app
from app.settings import Settings
from sql.latency import LatencyHistogram
from tests.conftest import JWT_SECRET, TOKEN_SECRET, User, make_user

Z = 1.959963984540054  # the normal's 97.5 % quantile
T8 = 2.306004135204166  # Student's t, 8 degrees of freedom, 97.5 %
T4 = 2.776445105197793  # ... 4 degrees of freedom


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _t8_two_sided(t: float) -> float:
    """P(|T| > t), 8 degrees of freedom: Abramowitz & Stegun 26.7.3 for even df,
    P(|T| < t) = sin θ (1 + cos²θ/2 + 1·3 cos⁴θ/(2·4) + 1·3·5 cos⁶θ/(2·4·6)), θ = atan(t/√8)."""
    theta = math.atan(abs(t) / math.sqrt(8))
    c2 = math.cos(theta) ** 2
    inside = math.sin(theta) * (1 + c2 / 2 + 3 * c2**2 / 8 + 15 * c2**3 / 48)
    return 1 - inside


def _wilson(count: int, n: int) -> tuple[float, float]:
    p = count / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


NOW = datetime.now(UTC)
HOUR_AGO = NOW - timedelta(hours=1)

# The new arm: (status, ms from requested to first_render, to ended, edits applied (ms)).
NEW = [
    ("ended", 800, 60_000, [40, 45, 90]),
    ("ended", 1000, 120_000, [120]),
    ("ended", 1200, 600_000, [70, 75]),
    ("active", 1500, None, []),
    ("active", 3000, None, []),
    ("failed", None, 5_000, []),  # failed, and fell back to Appetize
]
# The Appetize arm: (reason, requested reported?, ms to first_frame, to ended, edit latencies,
# errors reported).
APPETIZE = [
    ("percentage", True, 6800, 300_000, [30_000, 42_000], 0),
    ("fallback", True, 7000, 30_000, [25_000], 0),
    ("kill_switch", True, 7200, 90_000, [45_000, 50_000], 0),
    ("flag", True, 7500, 45_000, [], 1),
    ("fallback", False, 9000, None, [], 2),  # no `requested` reported: from created_at
]


def _histogram(values: Sequence[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for ms in values:
        histogram.add(ms)
    return histogram


def _insert_new(conn: psycopg.Connection[Any], user: User) -> None:
    for status, first, ended, edits in NEW:
        session = uuid.uuid4()
        conn.execute(
            """INSERT INTO preview_sessions (id, project_id, user_id, status, created_at)
               VALUES (%s, %s, %s, %s, %s)""",
            (session, user.project_id, user.id, status, HOUR_AGO),
        )
        stages = {"requested": 0, "first_render": first, "ended": ended}
        for stage, ms in stages.items():
            if ms is not None:
                conn.execute(
                    "INSERT INTO session_events (session_id, kind, at) VALUES (%s, %s, %s)",
                    (session, stage, HOUR_AGO + timedelta(milliseconds=ms)),
                )
        if edits:
            applied = _histogram(edits)
            conn.execute(
                """INSERT INTO session_edit_latency (session_id, edits, ack_buckets,
                       applied_buckets, applied_count, applied_max_ms)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                (
                    session,
                    len(edits),
                    [0] * len(applied.counts),
                    applied.counts,
                    len(edits),
                    applied.max_ms,
                ),
            )
        if status == "failed":
            _fallback(conn, user, session, HOUR_AGO)
    _fallback(conn, user, None, HOUR_AGO)  # a start that failed before a session existed
    # Outside the window (a week by default), or made before timelines (no `requested`).
    old = uuid.uuid4()
    conn.execute(
        """INSERT INTO preview_sessions (id, project_id, user_id, status, created_at)
           VALUES (%s, %s, %s, 'failed', %s)""",
        (old, user.project_id, user.id, NOW - timedelta(days=10)),
    )
    conn.execute(
        "INSERT INTO session_events (session_id, kind, at) VALUES (%s, 'requested', %s)",
        (old, NOW - timedelta(days=10)),
    )
    _fallback(conn, user, None, NOW - timedelta(days=10))
    conn.execute(
        """INSERT INTO preview_sessions (id, project_id, user_id, status, created_at)
           VALUES (%s, %s, %s, 'failed', %s)""",
        (uuid.uuid4(), user.project_id, user.id, HOUR_AGO),
    )


def _fallback(
    conn: psycopg.Connection[Any], user: User, session: uuid.UUID | None, at: datetime
) -> None:
    conn.execute(
        """INSERT INTO preview_fallbacks (project_id, user_id, session_id, reason, at)
           VALUES (%s, %s, %s, 'start_failed', %s)""",
        (user.project_id, user.id, session, at),
    )


def _insert_appetize(conn: psycopg.Connection[Any], user: User) -> None:
    def event(session: uuid.UUID, stage: str, ms: float, detail: dict[str, Any]) -> None:
        conn.execute(
            """INSERT INTO appetize_arm_events (session_id, stage, at, detail)
               VALUES (%s, %s, %s, %s)""",
            (session, stage, HOUR_AGO + timedelta(milliseconds=ms), Jsonb(detail)),
        )

    for reason, requested, first, ended, edits, errors in APPETIZE:
        session = uuid.uuid4()
        conn.execute(
            """INSERT INTO appetize_arm_sessions (id, project_id, user_id, reason, created_at)
               VALUES (%s, %s, %s, %s, %s)""",
            (session, user.project_id, user.id, reason, HOUR_AGO),
        )
        if requested:
            event(session, "requested", 0, {})
        event(session, "embed_loaded", first / 2, {})
        event(session, "first_frame", first, {})
        for i, latency in enumerate(edits):
            event(session, "edit_visible", first + 1000 * (i + 1), {"latencyMs": latency})
        for i in range(errors):
            event(session, "error", first + 10 + i, {"message": "embed failed"})
        if ended is not None:
            event(session, "ended", ended, {})
    old = uuid.uuid4()
    conn.execute(
        """INSERT INTO appetize_arm_sessions (id, project_id, user_id, reason, created_at)
           VALUES (%s, %s, %s, 'percentage', %s)""",
        (old, user.project_id, user.id, NOW - timedelta(days=10)),
    )


def insert_known_arms(database_url: str) -> User:
    """NEW and APPETIZE (and the rows the window leaves out) as one user's sessions."""
    user = make_user(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        _insert_new(conn, user)
        _insert_appetize(conn, user)
    return user


@pytest.fixture
def admin(settings: Settings) -> User:
    insert_known_arms(settings.database_url or "")
    return make_user(settings.database_url or "", admin=True)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _report(client: TestClient, admin: User, **query: str) -> dict[str, Any]:
    answer = client.get("/api/admin/rollout/report", params=query, headers=admin.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _close(got: dict[str, float] | None, low: float, high: float, tol: float = 0.051) -> None:
    assert got is not None
    assert got["low"] == pytest.approx(low, abs=tol) and got["high"] == pytest.approx(
        high, abs=tol
    ), (got, low, high)


def test_time_to_first_preview_matches_the_hand_computed_figures(
    client: TestClient, admin: User
) -> None:
    report = _report(client, admin)
    new = report["arms"]["new"]["timeToFirstPreview"]
    appetize = report["arms"]["appetize"]["timeToFirstPreview"]
    assert report["arms"]["new"]["sessions"] == 6  # the old and the untimed ones left out
    assert report["arms"]["appetize"]["sessions"] == 5
    # new: 800 1000 1200 1500 3000 (the failed session never rendered)
    assert (new["n"], new["p50Ms"], new["meanMs"]) == (5, 1200, 1500)
    # Appetize: 6800 7000 7200 7500 9000 (the last from created_at: no `requested` reported)
    assert (appetize["n"], appetize["p50Ms"], appetize["meanMs"]) == (5, 7200, 7500)

    # Both: deviations -700 -500 -300 0 1500 → Σd² = 3,080,000, s² = 770,000.
    se = math.sqrt(770_000 / 5)  # 392.43
    _close(new["meanCi"], 1500 - T4 * se, 1500 + T4 * se)  # [410.4, 2589.6]
    _close(appetize["meanCi"], 7500 - T4 * se, 7500 + T4 * se)
    # The exact bootstrap distribution of a median of five: P(M* ≤ x₍ₖ₎) = P(Bin(5, k/5) ≥ 3)
    # = .05792, .31744, .68256, .94208, 1 for k = 1..5: the 2.5 % and 97.5 % points are the
    # smallest and the largest value.
    assert new["p50Ci"] == {"low": 800, "high": 3000}
    assert appetize["p50Ci"] == {"low": 6800, "high": 9000}

    compared = report["comparisons"]["timeToFirstPreview"]
    medians, means = compared["medians"], compared["means"]
    assert medians["difference"] == 1200 - 7200
    # Every new value below every Appetize value: U = 0, exact p = 2 / C(10, 5) = 2/252.
    assert medians["pValue"] == pytest.approx(2 / 252)
    assert medians["significant"] is True
    assert medians["test"] == "mann-whitney-u exact"
    # The difference of two independent bootstrap medians (probabilities .05792 .25952 .36512
    # .25952 .05792 of each order statistic): cumulative .0184 at -8000, .0395 at -7800;
    # .9605 at -4500, .9816 at -4200.
    assert medians["ci"] == {"low": -7800, "high": -4200}
    # Welch: equal variances, equal n → df = 2(n - 1) = 8; se = √(2 · 770,000 / 5) = 554.98.
    se = math.sqrt(2 * 770_000 / 5)
    t = -6000 / se  # -10.811
    assert means["difference"] == -6000
    _close(means["ci"], -6000 - T8 * se, -6000 + T8 * se)  # [-7279.8, -4720.2]
    assert means["pValue"] == pytest.approx(_t8_two_sided(t), rel=1e-6)
    assert means["significant"] is True and means["test"] == "welch-t"


def test_edit_to_visible_session_length_and_rates_match_the_hand_computed_figures(
    client: TestClient, admin: User
) -> None:
    report = _report(client, admin)
    arms, compared = report["arms"], report["comparisons"]

    # Per session, the median edit read from the latency buckets (upper bound, capped by the
    # session's largest): new [40 45 90] → 2nd in bucket ≤50 → 50; [120] → 120; [70 75] → 1st
    # in bucket ≤80, capped by 75 → 75. Appetize [30000 42000] → 1st in bucket ≤30000 →
    # 30000; [25000] → bucket ≤30000, capped → 25000; [45000 50000] → bucket ≤50000 → 50000.
    new, appetize = arms["new"]["editToVisible"], arms["appetize"]["editToVisible"]
    assert (new["n"], new["p50Ms"], new["meanMs"]) == (3, 75, pytest.approx(81.7, abs=0.05))
    assert (appetize["n"], appetize["p50Ms"], appetize["meanMs"]) == (3, 30_000, 35_000)
    # 3 against 3, fully apart: exact p = 2 / C(6, 3) = 0.1: not significant with so few.
    edits = compared["editToVisible"]["medians"]
    assert edits["difference"] == 75 - 30_000
    assert edits["pValue"] == pytest.approx(0.1)
    assert edits["significant"] is False
    assert compared["editToVisible"]["means"]["difference"] == pytest.approx(
        (50 + 120 + 75) / 3 - 35_000, abs=0.05
    )

    # Session length: new 5000 60000 120000 600000; Appetize 30000 45000 90000 300000.
    new, appetize = arms["new"]["sessionLength"], arms["appetize"]["sessionLength"]
    assert (new["n"], new["p50Ms"], new["meanMs"]) == (4, 90_000, 196_250)
    assert (appetize["n"], appetize["p50Ms"], appetize["meanMs"]) == (4, 67_500, 116_250)
    # U(new) = 0 + 2 + 3 + 4 = 9 of 16; the exact null counts of U for 4 and 4 (of 70
    # orderings) are 1 1 2 3 5 5 7 7 8 ...: P(U ≤ 7) = 31/70, two-sided p = 62/70.
    assert compared["sessionLength"]["medians"]["pValue"] == pytest.approx(62 / 70)

    # Errors: new 1 of 6 failed; Appetize 2 of 5 sessions reported an error (one twice).
    errors = arms["new"]["errorRate"]
    assert (errors["count"], errors["n"]) == (1, 6)
    _close(errors["ci"], *_wilson(1, 6), tol=1e-6)
    errors = arms["appetize"]["errorRate"]
    assert (errors["count"], errors["n"]) == (2, 5)
    _close(errors["ci"], *_wilson(2, 5), tol=1e-6)
    difference = compared["errorRate"]
    pooled = 3 / 11
    se = math.sqrt(pooled * (1 - pooled) * (1 / 6 + 1 / 5))  # 0.26968
    z = (1 / 6 - 2 / 5) / se  # -0.8652
    assert difference["difference"] == pytest.approx(1 / 6 - 2 / 5, abs=1e-6)
    assert difference["pValue"] == pytest.approx(2 * (1 - _phi(abs(z))), rel=1e-6)  # 0.3869
    assert difference["significant"] is False
    (l1, u1), (l2, u2) = _wilson(1, 6), _wilson(2, 5)
    d = 1 / 6 - 2 / 5
    _close(
        difference["ci"],
        d - math.sqrt((1 / 6 - l1) ** 2 + (u2 - 2 / 5) ** 2),
        d + math.sqrt((u1 - 1 / 6) ** 2 + (2 / 5 - l2) ** 2),
        tol=1e-6,
    )

    # Fallbacks: new 2 of 7 attempts (the failed session, and a start without a session);
    # Appetize: 2 of its 5 sessions came by fallback. Not compared.
    assert arms["new"]["fallbackRate"]["count"] == 2
    assert arms["new"]["fallbackRate"]["n"] == 7
    assert (arms["appetize"]["fallbackRate"]["count"], arms["appetize"]["fallbackRate"]["n"]) == (
        2,
        5,
    )
    assert compared["fallbackRate"] is None
    assert "bucket" in report["definitions"]["editToVisible"]


def test_since_narrows_the_window(client: TestClient, admin: User) -> None:
    everything = _report(client, admin, since=str(20 * 86400))
    assert everything["arms"]["new"]["sessions"] == 7  # the ten-day-old session too
    assert everything["arms"]["appetize"]["sessions"] == 6
    assert everything["arms"]["new"]["fallbackRate"]["n"] == 9
    recent = _report(client, admin, since=(NOW - timedelta(minutes=30)).isoformat())
    assert recent["arms"]["new"]["sessions"] == recent["arms"]["appetize"]["sessions"] == 0
    assert recent["arms"]["new"]["timeToFirstPreview"] == {
        "n": 0,
        "p50Ms": None,
        "meanMs": None,
        "p50Ci": None,
        "meanCi": None,
    }
    assert recent["comparisons"]["timeToFirstPreview"] == {"medians": None, "means": None}
    assert recent["comparisons"]["errorRate"] is None


def _counts(settings: Settings) -> tuple[int, ...]:
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        row = conn.execute(
            """SELECT (SELECT count(*) FROM preview_sessions),
                      (SELECT count(*) FROM session_events),
                      (SELECT count(*) FROM appetize_arm_sessions),
                      (SELECT count(*) FROM appetize_arm_events),
                      (SELECT count(*) FROM preview_fallbacks),
                      (SELECT count(*) FROM preview_flag_audit)"""
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize(
    ("since", "words"),
    [
        ("yesterday", "since is seconds ago or an ISO-8601 time"),
        ("-5", "since is seconds ago or an ISO-8601 time"),
        ((NOW + timedelta(days=1)).isoformat(), "since is in the future"),
    ],
)
def test_bad_since_is_refused_and_changes_nothing(
    client: TestClient, admin: User, settings: Settings, since: str, words: str
) -> None:
    before = _counts(settings)
    answer = client.get("/api/admin/rollout/report", params={"since": since}, headers=admin.headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_query"
    assert words in answer.json()["message"]
    assert _counts(settings) == before


def test_only_admins_read_the_report(client: TestClient, admin: User, settings: Settings) -> None:
    before = _counts(settings)
    user = make_user(settings.database_url or "")
    refused = client.get("/api/admin/rollout/report", headers=user.headers)
    assert refused.status_code == 403, refused.text
    assert "arms" not in refused.json()
    assert client.get("/api/admin/rollout/report").status_code == 401
    unknown = client.get("/api/admin/rollout/report?window=5", headers=admin.headers)
    assert unknown.status_code == 400
    assert _counts(settings) == before


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PREVIEW_"):
            monkeypatch.delenv(name)
    for name, value in {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(settings.preview_data_dir),
    }.items():
        monkeypatch.setenv(name, value)


def test_the_cli_prints_the_same_report(
    client: TestClient, admin: User, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    served = _report(client, admin)
    assert cli.main(["rollout", "report", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for document in (served, printed):
        document.pop("since")
        document.pop("until")
    assert printed == served

    assert cli.main(["rollout", "report", "--since", "86400"]) == 0
    text = capsys.readouterr().out
    assert "sessions: new 6, appetize 5" in text
    assert "time to first preview (ms)" in text
    assert "n=5  p50 1200 [800, 3000]  mean 1500" in text
    assert "SIGNIFICANT (mann-whitney-u exact)" in text
    assert "not compared" in text


def test_the_cli_refuses_a_bad_since(
    cli_env: None, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _counts(settings)
    assert cli.main(["rollout", "report", "--since", "next week"]) == 2
    err = capsys.readouterr().err
    assert "refused (invalid_since): since is seconds ago or an ISO-8601 time" in err
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli.main(["rollout", "report", "--since", future]) == 2
    assert "since is in the future" in capsys.readouterr().err
    assert _counts(settings) == before

"""Session timelines: each session's stages, its edit-latency summary, and stage statistics.

A stage is a row of `session_events` whose kind is the stage's name (migration 0006). The lease
statement writes `requested`, `leased` and, for a hot machine, `machine_ready`
(sql.sessions.record_session); the worker's attach or wake writes `machine_ready`; the preview
proxy `first_render`; the sandbox socket `first_edit_applied`; the end `ended`. Each stage is
written once: the first write wins (a partial unique index, ON CONFLICT DO NOTHING), so a
repeated report changes nothing.

Times are Postgres's clock (`now()` of the writing transaction); `requested` is the lease
statement's `now()` minus how long the API had held the request (measured on its monotonic
clock), so no stage compares two machines' clocks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from sql.errors import DataError
from sql.latency import LatencyHistogram
from sql.sessions import Connection, translated_errors
from sql.stages import ONCE, STAGES, Stage


async def record_stage(
    conn: Connection, session_id: uuid.UUID, stage: Stage, detail: dict[str, Any]
) -> bool:
    """Record that `session_id` reached `stage` now. False when it had already (the first one
    wins) or when the session does not exist: nothing is written then."""
    async with translated_errors():
        cursor = await conn.execute(
            f"""INSERT INTO session_events (session_id, kind, detail)
                SELECT id, %s, %s FROM preview_sessions WHERE id = %s
                ON CONFLICT {ONCE} DO NOTHING""",
            (stage.value, Jsonb(detail), session_id),
        )
        return cursor.rowcount == 1


async def add_edit_latency(
    conn: Connection,
    session_id: uuid.UUID,
    ack: LatencyHistogram,
    applied: LatencyHistogram,
) -> bool:
    """Add one socket's histograms to the session's summary (element-wise: histograms add
    up exactly). False when the session does not exist."""
    if ack.count == 0 and applied.count == 0:
        return True
    async with translated_errors():
        cursor = await conn.execute(
            """INSERT INTO session_edit_latency AS l (session_id, edits, ack_buckets,
                   applied_buckets, applied_count, ack_max_ms, applied_max_ms)
               SELECT id, %(edits)s, %(ack)s, %(applied)s, %(applied_count)s, %(ack_max)s,
                   %(applied_max)s
               FROM preview_sessions WHERE id = %(session)s
               ON CONFLICT (session_id) DO UPDATE SET
                   edits = l.edits + excluded.edits,
                   ack_buckets = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
                       FROM unnest(l.ack_buckets, excluded.ack_buckets)
                           WITH ORDINALITY AS t(a, b, i)),
                   applied_buckets = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0)
                           ORDER BY i)
                       FROM unnest(l.applied_buckets, excluded.applied_buckets)
                           WITH ORDINALITY AS t(a, b, i)),
                   applied_count = l.applied_count + excluded.applied_count,
                   ack_max_ms = greatest(l.ack_max_ms, excluded.ack_max_ms),
                   applied_max_ms = greatest(l.applied_max_ms, excluded.applied_max_ms),
                   updated_at = now()""",
            {
                "session": session_id,
                "edits": ack.count,
                "ack": ack.counts,
                "applied": applied.counts,
                "applied_count": applied.count,
                "ack_max": ack.max_ms,
                "applied_max": applied.max_ms,
            },
        )
        return cursor.rowcount == 1


@dataclass(frozen=True)
class StageRow:
    stage: Stage
    at: datetime
    since_requested_ms: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class EditSummary:
    ack: LatencyHistogram
    applied: LatencyHistogram


@dataclass(frozen=True)
class Timeline:
    session_id: uuid.UUID
    user_id: uuid.UUID
    project_id: uuid.UUID
    template: str
    region: str
    status: str
    end_reason: str | None
    lease_kind: str | None
    stages: list[StageRow]
    edits: EditSummary


async def read_timeline(
    conn: Connection, session_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> Timeline | None:
    """A session's timeline; with `user_id`, only if the session is that user's."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT id, user_id, project_id, template, region, status, end_reason, created_at
               FROM preview_sessions WHERE id = %s AND (%s::uuid IS NULL OR user_id = %s)""",
            (session_id, user_id, user_id),
        )
        session = await cursor.fetchone()
        if session is None:
            return None
        cursor = await conn.execute(
            """SELECT e.kind, e.at, e.detail,
                   extract(epoch FROM e.at - coalesce(
                       (SELECT r.at FROM session_events r
                        WHERE r.session_id = e.session_id AND r.kind = 'requested'),
                       %s)) * 1000
               FROM session_events e
               WHERE e.session_id = %s AND e.kind = ANY(%s)
               ORDER BY e.at, array_position(%s, e.kind)""",
            (session[7], session_id, STAGES, STAGES),
        )
        stages = [
            StageRow(Stage(kind), at, round(float(ms), 1), detail)
            for kind, at, detail, ms in await cursor.fetchall()
        ]
        cursor = await conn.execute(
            """SELECT ack_buckets, ack_max_ms, applied_buckets, applied_max_ms
               FROM session_edit_latency WHERE session_id = %s""",
            (session_id,),
        )
        latency = await cursor.fetchone()
    edits = EditSummary(LatencyHistogram(), LatencyHistogram())
    if latency is not None:
        edits = EditSummary(
            LatencyHistogram.of(latency[0], latency[1]),
            LatencyHistogram.of(latency[2], latency[3]),
        )
    leased = next((s for s in stages if s.stage is Stage.LEASED), None)
    return Timeline(
        session_id=session[0],
        user_id=session[1],
        project_id=session[2],
        template=session[3],
        region=session[4],
        status=session[5],
        end_reason=session[6],
        lease_kind=None if leased is None else leased.detail.get("kind"),
        stages=stages,
        edits=edits,
    )


@dataclass(frozen=True)
class SessionSummary:
    session_id: uuid.UUID
    user_id: uuid.UUID
    project_id: uuid.UUID
    template: str
    region: str
    status: str
    created_at: datetime


async def search_sessions(
    conn: Connection, *, ids: uuid.UUID | None, email: str | None, limit: int
) -> list[SessionSummary]:
    """Sessions newest first: those whose id, user id or project id is `ids`, or whose user
    has `email` (case-insensitive), or, with neither, every session."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT s.id, s.user_id, s.project_id, s.template, s.region, s.status,
                   s.created_at
               FROM preview_sessions s
               WHERE (%(ids)s::uuid IS NULL OR s.id = %(ids)s OR s.user_id = %(ids)s
                      OR s.project_id = %(ids)s)
                 AND (%(email)s::text IS NULL OR s.user_id IN (
                      SELECT u.id FROM auth.users u WHERE lower(u.email) = lower(%(email)s)))
               ORDER BY s.created_at DESC, s.id
               LIMIT %(limit)s""",
            {"ids": ids, "email": email, "limit": limit},
        )
        return [SessionSummary(*row) for row in await cursor.fetchall()]


@dataclass(frozen=True)
class StagePercentiles:
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class StatsGroup:
    template: str
    region: str
    lease_kind: str
    sessions: int
    stages: dict[Stage, StagePercentiles]


async def stage_stats(conn: Connection, since: datetime) -> list[StatsGroup]:
    """p50/p95/p99 of each stage's time since `requested` (ms), per template, region and lease
    kind, over the sessions created since `since` (sessions without a `requested` stage, made
    before timelines, are left out; a session without a `leased` one counts as `unknown`)."""
    async with translated_errors():
        cursor = await conn.execute(
            """WITH s AS (
                   SELECT p.id, p.template, p.region, r.at AS requested_at,
                       coalesce(l.detail ->> 'kind', 'unknown') AS lease_kind
                   FROM preview_sessions p
                   JOIN session_events r ON r.session_id = p.id AND r.kind = 'requested'
                   LEFT JOIN session_events l ON l.session_id = p.id AND l.kind = 'leased'
                   WHERE p.created_at >= %(since)s
               ), timed AS (
                   SELECT s.template, s.region, s.lease_kind, e.kind AS stage,
                       extract(epoch FROM e.at - s.requested_at) * 1000 AS ms
                   FROM s JOIN session_events e ON e.session_id = s.id
                   WHERE e.kind = ANY(%(stages)s)
               )
               SELECT template, region, lease_kind, stage, count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY ms),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)
               FROM timed
               GROUP BY template, region, lease_kind, stage
               ORDER BY template, region, lease_kind""",
            {"since": since, "stages": STAGES},
        )
        rows = await cursor.fetchall()
    groups: dict[tuple[str, str, str], dict[Stage, StagePercentiles]] = {}
    for template, region, kind, stage, n, p50, p95, p99 in rows:
        groups.setdefault((template, region, kind), {})[Stage(stage)] = StagePercentiles(
            int(n), _ms(p50), _ms(p95), _ms(p99)
        )
    return [
        StatsGroup(
            template=template,
            region=region,
            lease_kind=kind,
            # Every counted session has exactly one `requested` stage.
            sessions=stages[Stage.REQUESTED].n if Stage.REQUESTED in stages else 0,
            stages=dict(sorted(stages.items(), key=lambda item: STAGES.index(item[0]))),
        )
        for (template, region, kind), stages in groups.items()
    ]


def _ms(value: Any) -> float:
    if value is None:
        raise DataError("percentile_cont of an empty group")
    return round(float(value), 1)

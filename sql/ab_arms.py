"""The two arms of the A/B report, one row per session, as the report needs them.

The new system's sessions are `preview_sessions` with a `requested` stage (sessions made before
timelines have none and are left out, as in sql.timelines.stage_stats); their stages are in
`session_events` (migration 0006), their edit latencies in `session_edit_latency` (a histogram
per session, sql/latency.py), their fallbacks in `preview_fallbacks` (0007). The Appetize arm's
sessions and stages are what the panel reported (`appetize_arm_sessions`, `appetize_arm_events`,
migration 0009). Times are milliseconds since the session's `requested` stage; None where the
stage was not reached (yet).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sql.latency import LatencyHistogram
from sql.sessions import Connection, translated_errors


@dataclass(frozen=True)
class NewArmSession:
    session_id: uuid.UUID
    failed: bool
    first_preview_ms: float | None  # first_render - requested
    length_ms: float | None  # ended - requested
    edits_applied: LatencyHistogram  # empty when no edit was applied
    fell_back: bool  # a fallback to Appetize names this session


@dataclass(frozen=True)
class AppetizeArmSession:
    session_id: uuid.UUID
    reason: str  # why the editor was on Appetize: decide_backend's reason
    errored: bool  # the panel reported an `error` stage
    first_preview_ms: float | None  # first_frame - requested
    length_ms: float | None  # ended - requested
    edit_latencies_ms: list[float]  # every edit_visible's latencyMs, in order


async def new_arm(conn: Connection, since: datetime) -> list[NewArmSession]:
    """The new system's sessions created since `since`."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT p.id, p.status = 'failed',
                   extract(epoch FROM f.at - r.at) * 1000,
                   extract(epoch FROM e.at - r.at) * 1000,
                   l.applied_buckets, l.applied_max_ms,
                   EXISTS (SELECT 1 FROM preview_fallbacks b WHERE b.session_id = p.id)
               FROM preview_sessions p
               JOIN session_events r ON r.session_id = p.id AND r.kind = 'requested'
               LEFT JOIN session_events f ON f.session_id = p.id AND f.kind = 'first_render'
               LEFT JOIN session_events e ON e.session_id = p.id AND e.kind = 'ended'
               LEFT JOIN session_edit_latency l ON l.session_id = p.id
               WHERE p.created_at >= %s
               ORDER BY p.created_at, p.id""",
            (since,),
        )
        rows = await cursor.fetchall()
    return [
        NewArmSession(
            session_id=row[0],
            failed=bool(row[1]),
            first_preview_ms=_float(row[2]),
            length_ms=_float(row[3]),
            edits_applied=(
                LatencyHistogram() if row[4] is None else LatencyHistogram.of(row[4], row[5])
            ),
            fell_back=bool(row[6]),
        )
        for row in rows
    ]


async def sessionless_fallbacks(conn: Connection, since: datetime) -> int:
    """Fallbacks recorded since `since` that name no session: starts on the new system that
    failed before a session existed (each one an attempt the new arm lost)."""
    async with translated_errors():
        cursor = await conn.execute(
            "SELECT count(*) FROM preview_fallbacks WHERE session_id IS NULL AND at >= %s",
            (since,),
        )
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def appetize_arm(conn: Connection, since: datetime) -> list[AppetizeArmSession]:
    """The Appetize arm's sessions created since `since`. A session whose `requested` stage
    was not reported counts from when the server created it; one whose `ended` was not, ends
    when the server recorded its end (`ended_at`), if it did."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT a.id, a.reason,
                   EXISTS (SELECT 1 FROM appetize_arm_events x
                           WHERE x.session_id = a.id AND x.stage = 'error'),
                   extract(epoch FROM ff.at - coalesce(rq.at, a.created_at)) * 1000,
                   extract(epoch FROM coalesce(en.at, a.ended_at)
                                      - coalesce(rq.at, a.created_at)) * 1000,
                   coalesce((SELECT array_agg((v.detail ->> 'latencyMs')::float8
                                              ORDER BY v.at, v.id)
                             FROM appetize_arm_events v
                             WHERE v.session_id = a.id AND v.stage = 'edit_visible'
                               AND jsonb_typeof(v.detail -> 'latencyMs') = 'number'
                               AND (v.detail ->> 'latencyMs')::float8 >= 0),
                            '{}')
               FROM appetize_arm_sessions a
               LEFT JOIN appetize_arm_events rq ON rq.session_id = a.id
                   AND rq.stage = 'requested'
               LEFT JOIN appetize_arm_events ff ON ff.session_id = a.id
                   AND ff.stage = 'first_frame'
               LEFT JOIN appetize_arm_events en ON en.session_id = a.id AND en.stage = 'ended'
               WHERE a.created_at >= %s
               ORDER BY a.created_at, a.id""",
            (since,),
        )
        rows = await cursor.fetchall()
    return [
        AppetizeArmSession(
            session_id=row[0],
            reason=row[1],
            errored=bool(row[2]),
            first_preview_ms=_float(row[3]),
            length_ms=_float(row[4]),
            edit_latencies_ms=[float(v) for v in row[5]],
        )
        for row in rows
    ]


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)

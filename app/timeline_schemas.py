"""The bodies of the timeline routes (app/routes/timelines.py): queries in, views out.

Kept beside app/schemas.py, in the same style (camelCase on the wire, strict, unknown
parameters refused), so the operator's routes do not crowd the editor's.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

SINCE_SECONDS = re.compile(r"[0-9]{1,9}")
DEFAULT_SINCE_SECONDS = 3600
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")


def _int_from_text(value: object) -> object:
    # A query parameter is text; JSON Schema's integer also has 5.0 and 5e0. Anything else
    # (`1_0`, ` 5`) is left for the strict int to refuse.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        number = float(value)
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
    return value


QueryInt = Annotated[int, BeforeValidator(_int_from_text)]
SinceText = Annotated[
    str,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{SINCE_SECONDS.pattern}$"},
                {"type": "string", "format": "date-time"},
            ],
            "description": "seconds ago, or an ISO-8601 time (not in the future)",
        }
    ),
]


class _Query(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )


class SessionSearchQuery(_Query):
    """GET /api/admin/sessions: `q` is a session, user or project id, or a user's email."""

    q: str | None = Field(default=None, max_length=320, pattern=r"^[^\x00-\x1f\x7f]*$")
    limit: QueryInt = Field(default=50, ge=1, le=200)


class StatsQuery(_Query):
    since: SinceText | None = None


def parse_since(text: str | None, now: datetime) -> datetime:
    """`since` as a time: seconds before `now`, or an ISO-8601 time (UTC when it names no
    zone). Raises ValueError, with a sentence for the caller, for anything else or a time
    after `now`."""
    if text is None:
        return now - timedelta(seconds=DEFAULT_SINCE_SECONDS)
    if SINCE_SECONDS.fullmatch(text):
        return now - timedelta(seconds=int(text))
    try:
        at = datetime.fromisoformat(text.upper())
    except ValueError:
        raise ValueError("since is seconds ago or an ISO-8601 time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        at = at.astimezone(UTC)
    except OverflowError:
        # Before year 1 in UTC: as early as a time gets.
        at = datetime.min.replace(tzinfo=UTC)
    if at > now:
        raise ValueError("since is in the future")
    return at


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class StageView(_View):
    stage: str
    at: datetime
    since_requested_ms: float
    detail: dict[str, Any]


class EditLatencyView(_View):
    """Every edit's latency, summarised: p50/p95 are bucket bounds (sql/latency.py)."""

    count: int
    ack_p50_ms: float | None
    ack_p95_ms: float | None
    ack_max_ms: float | None
    applied_p50_ms: float | None
    applied_p95_ms: float | None
    applied_max_ms: float | None


class TimelineView(_View):
    session_id: uuid.UUID
    user_id: uuid.UUID
    project_id: uuid.UUID
    template: str
    region: str
    lease_kind: str | None
    status: str
    end_reason: str | None
    stages: list[StageView]
    edits: EditLatencyView


class SessionSummaryView(_View):
    session_id: uuid.UUID
    user_id: uuid.UUID
    project_id: uuid.UUID
    template: str
    region: str
    status: str
    created_at: datetime


class SessionSearchView(_View):
    sessions: list[SessionSummaryView]


class StagePercentilesView(_View):
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


class StatsGroupView(_View):
    template: str
    region: str
    lease_kind: str
    sessions: int
    stages: dict[str, StagePercentilesView] = Field(
        description="per stage: milliseconds since `requested`"
    )


class StatsView(_View):
    since: datetime
    groups: list[StatsGroupView]

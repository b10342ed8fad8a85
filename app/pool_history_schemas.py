"""The bodies of GET /api/admin/pool/history (app/routes/pool_history.py), in the style of
app/schemas.py: camelCase on the wire, strict, unknown parameters refused."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.timeline_schemas import QueryInt
from pool.core.pool_history import HISTORY_SECONDS

MAX_MINUTES = HISTORY_SECONDS // 60


class PoolHistoryQuery(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )

    minutes: QueryInt = Field(default=MAX_MINUTES, ge=1, le=MAX_MINUTES)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ReadyTiersView(_View):
    hot: int
    suspended: int
    stopped: int


class PoolSampleView(_View):
    at: datetime
    template: str
    region: str
    ready: ReadyTiersView = Field(description="ready machines per tier")
    leased: int
    booting: int
    hit_ratio: float | None = Field(
        description="share of lease attempts served from the pool in the 5 minutes before "
        "`at`; null when none was attempted"
    )


class PoolHistoryView(_View):
    samples: list[PoolSampleView] = Field(description="every pool's samples, oldest first")

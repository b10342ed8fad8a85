"""The bodies of the flag routes (app/routes/flags.py) and of `flags set`: what comes in,
checked at the trust boundary, and what goes out. Same style as app/schemas.py (camelCase on
the wire, strict, unknown fields refused)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.schemas import NAME_PATTERN, UuidText

_NUMBER = re.compile(r"[0-9]{1,19}")
MAX_AUDIT_PAGE = 500


def _int_from_text(value: object) -> object:
    # A query parameter is text; the strict int takes only what is plainly a count.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return int(value)
    return value


QueryInt = Annotated[int, BeforeValidator(_int_from_text)]
PlanName = Annotated[str, Field(pattern=NAME_PATTERN)]
ChoiceName = Literal["new", "appetize"]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )


class BackendQuery(_Strict):
    project_id: UuidText


class RolloutBody(_Strict):
    """Either or both; a field left out (or null) keeps what is stored. `percentage` is the
    share of users on the new system, 0 to 100 (resolution 0.01: users are in 10,000
    buckets)."""

    kill_switch: bool | None = None
    percentage: float | None = Field(default=None, ge=0, le=100)


class OverrideBody(_Strict):
    """`new`: this preview system (answered `fly` or `local`); `appetize`: Appetize."""

    backend: ChoiceName


class UserFlagPath(_Strict):
    user: UuidText


class ProjectFlagPath(_Strict):
    project: UuidText


class PlanFlagPath(_Strict):
    plan: PlanName


class AuditQuery(_Strict):
    """Newest first; `beforeId` pages back (the last `id` of the previous page); `flag` keeps
    one flag's changes (`killSwitch`, `percentage`, `user:{id}`, `project:{id}`,
    `plan:{name}`)."""

    limit: QueryInt = Field(default=100, ge=1, le=MAX_AUDIT_PAGE)
    before_id: QueryInt = Field(default=0, ge=0, le=2**62, description="0: from the newest")
    flag: str | None = Field(default=None, max_length=80, pattern=r"^[A-Za-z0-9:_-]+$")


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class BackendView(_View):
    """Which preview system this editor uses, and why."""

    backend: Literal["fly", "local", "appetize"]
    reason: Literal["flag", "percentage", "kill_switch", "fallback", "platform", "default"]
    detail: str = Field(description="the reason in words, for people")
    appetize: dict[str, Any] | None = Field(
        description="backend `appetize`: the project's Appetize settings (publicKey, platform, "
        "device, osVersion, scale); null when it has none, or for the other backends"
    )


class FlagChangeView(_View):
    id: int
    at: datetime
    actor_id: uuid.UUID | None = Field(description="the admin's user id; null from the CLI")
    actor: str
    flag: str
    old: Any = Field(description="the value before; null: no override")
    new: Any = Field(description="the value after; null: no override")


class RolloutView(_View):
    kill_switch: bool
    percentage: float
    updated_at: datetime


class OverrideView(_View):
    scope: Literal["user", "project", "plan"]
    subject: str = Field(description="the user's or project's id, or the plan's name")
    backend: ChoiceName
    updated_at: datetime


class FlagsView(_View):
    rollout: RolloutView
    overrides: list[OverrideView]
    cache_seconds: float = Field(description="the longest a web process answers from old flags")


class RolloutChangedView(RolloutView):
    changes: list[FlagChangeView] = Field(description="what this request changed (audited)")


class OverrideChangedView(_View):
    scope: Literal["user", "project", "plan"]
    subject: str
    backend: ChoiceName
    changes: list[FlagChangeView] = Field(description="what this request changed (audited)")


class AuditView(_View):
    changes: list[FlagChangeView]

"""Changing the flags: one set of rules for both doors, the admin API (app/routes/flags.py)
and `preview-orchestrator flags` (app/rollout/cli_flags.py). Input is checked with the API's
own models, so a value the API refuses the CLI refuses with the same words. Every change is
stored with its audit row (sql/flags.py) and then announced on the flags channel, so each web
process drops its cached flags at once (app/rollout/flag_cache.py).

Errors are FlagAdminError with an API error code and status (400, or 404 for a user, project,
plan or override that does not exist); each door turns it into its own kind of answer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from app.rollout.decision import Choice
from app.rollout.flag_cache import announce_change
from app.rollout.flag_schemas import (
    OverrideBody,
    PlanFlagPath,
    ProjectFlagPath,
    RolloutBody,
    UserFlagPath,
)
from app.validation import first_error
from sql.errors import UnknownReference
from sql.flags import (
    Actor,
    FlagChange,
    GlobalFlags,
    Override,
    Scope,
    StoredFlags,
    list_changes,
    load_flags,
    set_override,
    set_rollout,
)

Subject = uuid.UUID | str
M = TypeVar("M", bound=BaseModel)


class FlagAdminError(ValueError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class RolloutChange:
    kill_switch: bool | None
    percentage: Decimal | None


def parse_rollout(raw: Any) -> RolloutChange:
    body = _validate(RolloutBody, raw, "body", "invalid_body")
    # The decimal the client wrote (12.3, not 12.300000000000000711): buckets compare exactly.
    percentage = None if body.percentage is None else Decimal(repr(body.percentage))
    return RolloutChange(body.kill_switch, percentage)


def parse_choice(raw: Any) -> Choice:
    return Choice(_validate(OverrideBody, raw, "body", "invalid_body").backend)


_SUBJECT_MODELS: dict[Scope, tuple[type[BaseModel], str]] = {
    Scope.USER: (UserFlagPath, "user"),
    Scope.PROJECT: (ProjectFlagPath, "project"),
    Scope.PLAN: (PlanFlagPath, "plan"),
}


def parse_subject(scope: Scope, text: str) -> Subject:
    """A user's or project's id (a UUID), or a plan's name."""
    model, name = _SUBJECT_MODELS[scope]
    parsed = _validate(model, {name: text}, "path", "invalid_id")
    value: Subject = next(iter(parsed.model_dump().values()))
    return value


def _validate(model: type[M], raw: Any, where: str, code: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise FlagAdminError(code, first_error(exc, where)) from None


@dataclass(frozen=True)
class FlagAdmin:
    """The flags' stores, for the doors that change them."""

    db: AsyncConnectionPool
    redis: Redis
    channel: str

    async def flags(self) -> StoredFlags:
        async with self.db.connection() as conn:
            return await load_flags(conn)

    async def changes(
        self, *, limit: int, before: int | None = None, flag: str | None = None
    ) -> list[FlagChange]:
        async with self.db.connection() as conn:
            return await list_changes(conn, limit=limit, before=before, flag=flag)

    async def set_rollout(
        self, actor: Actor, change: RolloutChange
    ) -> tuple[GlobalFlags, list[FlagChange]]:
        async with self.db.connection() as conn:
            stored, changes = await set_rollout(
                conn, actor, kill_switch=change.kill_switch, percentage=change.percentage
            )
        if changes:
            await announce_change(self.redis, self.channel)
        return stored, changes

    async def set_override(
        self, actor: Actor, scope: Scope, subject: Subject, choice: Choice | None
    ) -> FlagChange | None:
        """Put the override (`choice` None: remove it); the change, None when already so.
        Removing an override that is not there is FlagAdminError 404."""
        try:
            async with self.db.connection() as conn:
                change = await set_override(
                    conn, actor, scope, subject, None if choice is None else choice.value
                )
        except UnknownReference:
            raise FlagAdminError("not_found", f"no {scope.value} {subject}", 404) from None
        if change is None and choice is None:
            raise FlagAdminError("not_found", f"{scope.value} {subject} has no override", 404)
        if change is not None:
            await announce_change(self.redis, self.channel)
        return change


def rollout_json(rollout: GlobalFlags) -> dict[str, Any]:
    return {
        "killSwitch": rollout.kill_switch,
        "percentage": float(rollout.percentage),
        "updatedAt": rollout.updated_at.isoformat(),
    }


def override_json(override: Override) -> dict[str, Any]:
    return {
        "scope": override.scope.value,
        "subject": override.subject,
        "backend": override.backend,
        "updatedAt": override.updated_at.isoformat(),
    }


def change_json(change: FlagChange) -> dict[str, Any]:
    return {
        "id": change.id,
        "at": change.at.isoformat(),
        "actorId": None if change.actor_id is None else str(change.actor_id),
        "actor": change.actor,
        "flag": change.flag,
        "old": change.old,
        "new": change.new,
    }

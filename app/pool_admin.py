"""Pool administration: one set of rules for every door (issue 10, "one door per operation").

The admin API (`app/routes/admin.py`), the CLI (`pool set`, `app/operator.py`) and the lease
path's choice of pool all check a pool's name here, and the two operator doors set bounds
through `bounds_target` + `store_bounds`: a bound the API refuses, the CLI refuses too, with the
same words. Errors are `PoolAdminError` with an API error code; each door turns it into its own
kind of answer (a 400, a CLI message).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from app.schemas import NAME_PATTERN, PoolBoundsBody, TierBoundsBody
from app.settings import Settings
from app.validation import first_error
from pool.store.inventory import Inventory, PoolKey
from pool.store.queue import JobQueue
from sql.pool_targets import PoolTarget, get_target, set_target


class PoolAdminError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_name(template: str, region: str) -> None:
    """A pool's names are lowercase names (fullmatch: `$` would also match before "\\n")."""
    if not re.fullmatch(NAME_PATTERN, template) or not re.fullmatch(NAME_PATTERN, region):
        raise PoolAdminError("invalid_pool", "template and region are lowercase names")


def check_configured(settings: Settings, template: str, region: str) -> PoolKey:
    """A pool the configuration names: its template in PREVIEW_TEMPLATES, its region the
    default or one of PREVIEW_REGIONS. Anything else would make a pool (and machines) for a
    name a user or an operator made up."""
    check_name(template, region)
    if template not in settings.templates:
        raise PoolAdminError(
            "unknown_template",
            f"unknown template {template!r} (known: {', '.join(settings.templates)})",
        )
    if region not in settings.regions:
        raise PoolAdminError(
            "unknown_region",
            f"unknown region {region!r} (known: {', '.join(settings.regions)})",
        )
    return PoolKey(template, region)


def parse_bounds(raw: object) -> PoolBoundsBody:
    """The bounds as both doors take them (the API's JSON body, the CLI's arguments put in the
    same shape): one model, one set of limits, one wording of what is wrong."""
    try:
        return PoolBoundsBody.model_validate(raw)
    except ValidationError as exc:
        raise PoolAdminError("invalid_body", first_error(exc, "body")) from None


def bounds_target(template: str, region: str, body: PoolBoundsBody) -> PoolTarget:
    """The stored form of new bounds; each min must not exceed its max."""
    for name, low, high in (
        ("min", body.min, body.max),
        ("suspended.min", *_pair(body.suspended)),
        ("stopped.min", *_pair(body.stopped)),
    ):
        if low > high:
            raise PoolAdminError("invalid_body", f"{name} must not exceed its max")
    return PoolTarget(
        template,
        region,
        body.min,
        body.max,
        suspended_min=body.suspended.min if body.suspended else None,
        suspended_max=body.suspended.max if body.suspended else None,
        stopped_min=body.stopped.min if body.stopped else None,
        stopped_max=body.stopped.max if body.stopped else None,
        guest_cpus=body.guest.cpus if body.guest else None,
        guest_memory_mb=body.guest.memory_mb if body.guest else None,
    )


@dataclass(frozen=True)
class Stored:
    target: PoolTarget
    rolling: bool  # a new guest size is rolling through the pool's ready machines


async def store_bounds(
    db: AsyncConnectionPool,
    inventory: Inventory,
    jobs: JobQueue,
    target: PoolTarget,
    actor: uuid.UUID | None,
) -> Stored:
    """Store the bounds, make the pool known, queue its resize (and a rolling guest resize
    when the guest size changed)."""
    async with db.connection() as conn:
        before = await get_target(conn, target.template, target.region)
        stored = await set_target(conn, target, actor)
    await inventory.add_pool(PoolKey(target.template, target.region))
    await jobs.resize(target.template, target.region)
    rolling = target.guest_cpus is not None and _guest(before) != _guest(stored)
    if rolling:
        await jobs.resize_guest(target.template, target.region)
    return Stored(stored, rolling)


def _pair(bounds: TierBoundsBody | None) -> tuple[int, int]:
    return (bounds.min, bounds.max) if bounds else (0, 0)


def _guest(target: PoolTarget | None) -> tuple[int | None, int | None]:
    return (target.guest_cpus, target.guest_memory_mb) if target else (None, None)

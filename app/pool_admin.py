"""Pool administration: one set of rules for every door (issue 10, "one door per operation").

The admin API (`app/routes/admin.py`), the CLI (`pool set`, `pool delete`, `app/operator.py`)
and the lease path's choice of pool all check a pool's name here, and the two operator doors set
bounds through `bounds_target` + `store_bounds` and remove a pool through `remove_pool`: a bound
the API refuses, the CLI refuses too, with the same words. Errors are `PoolAdminError` with an
API error code; each door turns it into its own kind of answer (a 400 or 404, a CLI message).

The API takes a whole body (min and max always); the CLI may change one field and keep the
stored rest (`merge_change`), and refuses options the configured provider would ignore
(`check_provider_options`), since a shell has no documented body to stay compatible with.
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
from pool.core.states import Tier
from pool.providers.fly import FlyProvider
from pool.providers.local import LocalProvider
from pool.store.inventory import Inventory, PoolKey
from pool.store.queue import JobQueue
from sql.pool_targets import PoolTarget, get_target, set_target


class PoolAdminError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UnknownPool(PoolAdminError):
    """No pool of that name was ever made (the API's 404)."""

    def __init__(self, template: str, region: str) -> None:
        super().__init__("unknown_pool", f"no pool {template}/{region} (none was ever made)")


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
            raise PoolAdminError("invalid_body", f"{name} ({low}) must not exceed its max ({high})")
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


def merge_change(
    change: dict[str, object], stored: PoolTarget | None, default_bounds: tuple[int, int]
) -> dict[str, object]:
    """A partial change as a whole body: the hot tier's min and max the change leaves out are
    the stored ones (the configured defaults for a pool never set). The lower tiers and the
    guest need no filling: left out, `store_bounds` keeps what is stored."""
    low, high = (stored.min_size, stored.max_size) if stored else default_bounds
    return {"min": low, "max": high, **change}


def provider_tiers(settings: Settings) -> frozenset[Tier]:
    """pool.core.provider.pool_tiers for the configured provider, read off its class: making
    one needs Fly's token, or probes the host for the local one's isolation."""
    if getattr(_provider_class(settings), "supports_suspend", False):
        return frozenset(Tier)
    return frozenset({Tier.HOT})


def resizes_in_place(settings: Settings) -> bool:
    """Whether the configured provider resizes a machine (a new guest size rolls through the
    pool); elsewhere only the machines made from then on get it."""
    return callable(getattr(_provider_class(settings), "resize", None))


def _provider_class(settings: Settings) -> type[FlyProvider | LocalProvider]:
    return FlyProvider if settings.preview_provider == "fly" else LocalProvider


def check_provider_options(settings: Settings, change: dict[str, object]) -> None:
    """Refuse lower-tier bounds the provider would ignore: a pool on it keeps hot machines
    only, and stored bounds that nothing acts on would mislead whoever reads them."""
    supported = provider_tiers(settings)
    ignored = [t for t in ("suspended", "stopped") if t in change and Tier(t) not in supported]
    if ignored:
        raise PoolAdminError(
            "unsupported_option",
            f"the {settings.preview_provider} provider keeps hot machines only: "
            f"{' and '.join(ignored)} bounds need a provider that suspends machines (fly)",
        )


async def remove_pool(
    db: AsyncConnectionPool,
    inventory: Inventory,
    jobs: JobQueue,
    template: str,
    region: str,
    actor: uuid.UUID | None,
) -> None:
    """Remove a pool: every bound of every tier becomes 0, so the next resize destroys its
    ready machines and its leased ones are destroyed as their sessions end. Works for a pool
    whose region or template the configuration no longer names (the way to clean one up);
    UnknownPool for a pool nobody ever made."""
    check_name(template, region)  # not check_configured: a pool of a dropped region too
    async with db.connection() as conn:
        known = await get_target(conn, template, region) is not None
        if not known and PoolKey(template, region) not in await inventory.pools():
            raise UnknownPool(template, region)
        await set_target(conn, _removed(template, region), actor)
    await jobs.resize(template, region)


def _removed(template: str, region: str) -> PoolTarget:
    return PoolTarget(
        template,
        region,
        0,
        0,
        suspended_min=0,
        suspended_max=0,
        stopped_min=0,
        stopped_max=0,
    )


def _pair(bounds: TierBoundsBody | None) -> tuple[int, int]:
    return (bounds.min, bounds.max) if bounds else (0, 0)


def _guest(target: PoolTarget | None) -> tuple[int | None, int | None]:
    return (target.guest_cpus, target.guest_memory_mb) if target else (None, None)

"""Creating a Fly Machine exactly once, in the first region that has room.

Fly's create takes no idempotency key, and a timeout, 408 or 5xx may arrive after the machine
was made (research notes section 4). So every logical create is stamped with a `create_id` in
the machine's metadata, as flyctl does for blue-green deploys. After an ambiguous failure we
list by that id before creating again; lists are eventually consistent (duplicates on
2025-04-28 came from exactly this), so an empty list is asked again a few times with a short
backoff. Once a create succeeds after a retry, any twin carrying the same id is destroyed.

Capacity refusals are definite (nothing was made), so they move on to the next region, keeping
the same `create_id`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence

from pool.core.errors import CapacityExhausted, ProviderError
from pool.core.provider import MachineSpec, MachineState, new_machine_token
from pool.providers.fly_client import OutcomeUnknown
from pool.providers.fly_machines import MachinesAPI
from pool.providers.fly_models import (
    TOKEN_ENV,
    FlyMachineDefaults,
    MachineBody,
    machine_config,
    provider_state,
)

log = logging.getLogger(__name__)

FIND_ATTEMPTS = 4


class MachineCreator:
    def __init__(
        self,
        api: MachinesAPI,
        *,
        pool: str,
        image: str,
        defaults: FlyMachineDefaults,
        regions: Sequence[str],
        attempts: int,
        sleep: Callable[[float], Awaitable[None]],
        backoff: Callable[[int], float],
        destroy: Callable[[str], Awaitable[None]],
    ) -> None:
        self._api = api
        self._pool = pool
        self._image = image
        self._defaults = defaults
        self._regions = tuple(regions)
        self._attempts = attempts
        self._sleep = sleep
        self._backoff = backoff
        self._destroy = destroy

    async def create(self, spec: MachineSpec) -> MachineBody:
        order = [spec.region] if spec.region else []
        order += [region for region in self._regions if region not in order]
        if not order:
            raise ProviderError("no region to create the machine in")
        create_id = secrets.token_hex(13)
        # One token per logical create, like the create_id: a retried create that turns out
        # to have made the machine after all is the machine this token belongs to.
        token = new_machine_token()
        refusals: list[str] = []
        for region in order:
            try:
                return await self._create_in(region, spec, create_id, token)
            except CapacityExhausted as exc:
                log.warning("no capacity for %s in %s: %s", spec.template, region, exc)
                refusals.append(str(exc))
        raise CapacityExhausted(f"every region refused {spec.template}: {'; '.join(refusals)}")

    async def _create_in(
        self, region: str, spec: MachineSpec, create_id: str, token: str
    ) -> MachineBody:
        config = machine_config(
            image=self._image,
            cpu_kind=self._defaults.cpu_kind,
            cpus=spec.cpus,
            memory_mb=spec.memory_mb,
            metadata={
                "pool": self._pool,
                "template": spec.template,
                "region": region,
                "create_id": create_id,
            },
            env={**self._defaults.env, "PREVIEW_TEMPLATE": spec.template, TOKEN_ENV: token},
            agent_port=self._defaults.agent_port,
            restart_policy=self._defaults.restart_policy,
            restart_max_retries=self._defaults.restart_max_retries,
        )
        attempt = 0
        while True:
            try:
                body = await self._api.create({"region": region, "config": config})
            except OutcomeUnknown as exc:
                found = await self._find_created(create_id)
                if found is not None:
                    return found
                if attempt + 1 >= self._attempts:
                    raise ProviderError(f"create in {region} failed: {exc}") from exc
                await self._sleep(self._backoff(attempt))
                attempt += 1
                continue
            if attempt:
                # An earlier try may yet show up in a list: keep this one, drop any twin.
                await self._destroy_twins(await self._created(create_id), keep=body.id)
            return body

    async def _find_created(self, create_id: str) -> MachineBody | None:
        """The machine an ambiguous create made, if any."""
        for attempt in range(FIND_ATTEMPTS):
            if attempt:
                await self._sleep(self._backoff(attempt - 1))
            live = await self._created(create_id)
            if live:
                keep = min(live, key=lambda body: (body.created_at, body.id))
                await self._destroy_twins(live, keep=keep.id)
                return keep
        return None

    async def _created(self, create_id: str) -> list[MachineBody]:
        bodies = await self._api.list(
            {"metadata.pool": self._pool, "metadata.create_id": create_id}
        )
        return [b for b in bodies if provider_state(b.state) is not MachineState.DESTROYED]

    async def _destroy_twins(self, bodies: Sequence[MachineBody], keep: str) -> None:
        for body in bodies:
            if body.id != keep:
                log.warning("destroying %s, a duplicate create of %s", body.id, keep)
                await self._destroy(body.id)

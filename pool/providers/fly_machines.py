"""The Machines endpoints the provider uses, one method each, over a FlyClient.

Each method names its spec operationId (the rate limiter's action), its rate-limit scope and
what it parses; the decisions (what to call when, and what an answer means for the pool) stay
in the provider.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

from pool.core.errors import ProviderError
from pool.providers.fly_client import FlyClient, parse
from pool.providers.fly_models import ExecResult, MachineBody, MachineList

MAX_WAIT_CALL = 60  # seconds; Fly's cap for GET .../wait (notes section 2)
PAGE_SIZE = 100
MAX_PAGES = 1000


class MachinesAPI:
    def __init__(self, client: FlyClient, page_size: int = PAGE_SIZE) -> None:
        self.client = client
        self.app_name = client.app_name
        self._page_size = page_size

    async def create(self, body: dict[str, Any]) -> MachineBody:
        """POST .../machines, never retried blindly: raises OutcomeUnknown when the machine
        may or may not exist."""
        response = await self.client.send(
            "POST",
            self.client.machines_path(),
            action="Machines_create",
            scope=self.app_name,
            json=body,
            idempotent=False,
        )
        return parse(MachineBody, response, "create")

    async def get(self, machine_id: str) -> MachineBody:
        response = await self.client.send(
            "GET", self.client.machines_path(machine_id), action="Machines_show", scope=machine_id
        )
        return parse(MachineBody, response, f"get {machine_id}")

    async def list(self, filters: dict[str, str]) -> builtins.list[MachineBody]:
        """Every page of GET .../machines with these filters (metadata.<key>=value, ...)."""
        params = {**filters, "limit": str(self._page_size)}
        bodies: builtins.list[MachineBody] = []
        for _ in range(MAX_PAGES):
            response = await self.client.send(
                "GET",
                self.client.machines_path(),
                action="Machines_list",
                scope=self.app_name,
                params=params,
            )
            bodies += parse(MachineList, response, "list").root
            # The limit is advisory: a short or even empty page is not the end; only a missing
            # cursor is (spec, Machines_list).
            cursor = response.headers.get("fly-next-cursor")
            if not cursor:
                return bodies
            params = {**params, "cursor": cursor}
        raise ProviderError(f"listing machines took more than {MAX_PAGES} pages")

    async def act(self, machine_id: str, verb: str, nonce: str) -> None:
        """POST .../start, .../stop or .../suspend (no body: Fly's stop defaults suffice)."""
        await self.client.send(
            "POST",
            self.client.machines_path(machine_id, verb),
            action=f"Machines_{verb}",
            scope=machine_id,
            nonce=nonce,
        )

    async def update(self, machine_id: str, body: dict[str, Any], nonce: str) -> MachineBody:
        response = await self.client.send(
            "POST",
            self.client.machines_path(machine_id),
            action="Machines_update",
            scope=machine_id,
            json=body,
            nonce=nonce,
        )
        return parse(MachineBody, response, f"update {machine_id}")

    async def destroy(self, machine_id: str, nonce: str) -> None:
        await self.client.send(
            "DELETE",
            self.client.machines_path(machine_id),
            action="Machines_delete",
            scope=machine_id,
            params={"force": "true"},
            nonce=nonce,
        )

    async def wait(self, machine_id: str, states: Sequence[str], remaining: float) -> bool:
        """Block in GET .../wait until the machine is in one of `states`, for at most
        `remaining` seconds (capped at 60, at least 1). True when one was reached, False on
        Fly's 408 "not yet". Several states go as a repeated parameter, which the spec allows
        ("supports repeated or comma-separated values") and its enum schema validates."""
        seconds = min(MAX_WAIT_CALL, max(1, math.ceil(remaining)))
        response = await self.client.send(
            "GET",
            self.client.machines_path(machine_id, "wait"),
            action="Machines_wait",
            scope=machine_id,
            params={"state": builtins.list(states), "timeout": str(seconds)},
            expect=(200, 408),
        )
        return response.status_code == 200

    async def exec(self, machine_id: str, command: Sequence[str], timeout: int) -> ExecResult:
        response = await self.client.send(
            "POST",
            self.client.machines_path(machine_id, "exec"),
            action="Machines_exec",
            scope=machine_id,
            json={"command": builtins.list(command), "timeout": timeout},
        )
        return parse(ExecResult, response, f"exec on {machine_id}")

"""The Lua scripts of the pool's Redis data model, loaded once per client.

Each script takes the keys it touches as KEYS (named by pool.store.keys, whose docstring is the
schema) and everything else as ARGV; its header comment lists both. Every script reads the clock
with Redis TIME, so all instances agree on it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_NAMES = (
    "lease",
    "promote",
    "release",
    "heartbeat",
    "make_ready",
    "drain",
    "take_machine",
    "claim_leased",
    "forget_session",
    "forget_machine",
    "append_patch",
    "fly_slot",
    "set_token",
    "restore_machine",
    "stamp",
)


@functools.cache
def _source(name: str) -> str:
    # Read once per process: Scripts is built per client and per EditLog (every hydrate job,
    # every restore), and the files never change while it runs.
    return resources.files("pool.store").joinpath("lua").joinpath(f"{name}.lua").read_text()


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(_source(name)) for name in _NAMES
        }

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def run(self, name: str, keys: Sequence[str], *args: str | int) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

"""The Lua scripts of the pool's Redis data model, loaded once per client.

Keys (all under one prefix, `po:` by default):

    m:{machine}                 hash: state, epoch, template, region, address, session, user,
                                tier (hot | suspended | stopped), token_sha256, taken_at (when
                                it left service: moving, draining, recycling), agent (its agent
                                was connected when it became ready), agent_lost_at, ...
    ready:{template}:{region}   list of ready hot machine ids; LPUSH new, RPOP to lease (FIFO)
    ready-suspended:{t}:{r}     the same for the suspended tier
    ready-stopped:{t}:{r}       the same for the stopped tier
    machines:{template}:{region} set of every machine id the pool knows for that pool
    pools                       set of "{template}:{region}" seen
    pending                     zset machine id -> pending deadline (ms): leases not yet committed
    user:{user}                 set of the user's live session ids (the concurrent-session gate)
    rate:{user}                 GCRA theoretical arrival time (ms) for session creation
    booting-sessions:{t}:{r}    zset session id -> start (ms): on-demand boots in flight
    stats:{t}:{r}               hash: hits (any tier), hits_suspended, hits_stopped, misses
    demand:{t}:{r}:{bucket}     counter of lease attempts per 10 s bucket (expires after 15 min)
    edits:{session}             stream of patches, entry id = "{seq}-0", bounded (MAXLEN ~)
    snap:{session}              hash path -> content: every file at the stream's head
    snapmeta:{session}          hash: head (seq), bytes; applied (seq the machine acked), status
    ch:session:{session}        pub/sub channel: patches, applied, status, logs of a session
    ch:machine:{machine}        pub/sub channel: assign and hydrate for a machine's agent
    fly-rate:{action}:{scope}   GCRA theoretical arrival time (µs) of the next Fly API call
    create-backoff:{t}:{r}      hash: failures, retry_at, error: creates of a pool that keep failing

Every script reads the clock with Redis TIME, so all instances agree on it.
"""

from __future__ import annotations

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


class Scripts:
    def __init__(self, redis: Redis) -> None:
        folder = resources.files("pool.store").joinpath("lua")
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(folder.joinpath(f"{name}.lua").read_text())
            for name in _NAMES
        }

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def run(self, name: str, *args: str | int) -> Any:
        return await self._scripts[name](keys=[], args=list(args))

"""The states of a machine in the pool (Redis), separate from the provider's own states.

    booting ──▶ ready ──▶ pending ──▶ leased ──▶ recycling ──▶ ready
       │          │          ├──▶ ready (never committed: nobody saw it)
       │          │          └──▶ recycling (committed, then the answer failed)
       │          ├──▶ draining ──▶ (destroyed)
       │          └──▶ moving ──▶ ready (in another tier, or resized) or (destroyed)
       └──▶ leased (an on-demand boot, claimed by its session: claim_leased.lua)

    recycling ──▶ (destroyed) when every tier is full or the reset fails

A ready machine sits in one tier (`Tier`): hot (started, dev server up), suspended (snapshot
taken after the dev server came up) or stopped. `moving` is a ready machine taken out of the
lease lists while a worker changes it (suspends, stops or wakes it into another tier, or resizes
its guest); it comes back as ready in its destination tier, or is destroyed.

The transitions happen inside Lua scripts (pool/store/lua/), which check the state and the fencing
epoch atomically. TRANSITIONS is the diagram as data: every edge a script makes, and nothing
else (tests/integration/test_lua_transitions.py runs each script from each state against it).
Outside it: any record may be forgotten (forget_machine.lua, the machine destroyed); reconcile
(pool.services.reconciler) destroys a machine whose worker died in a transient state (booting,
recycling, moving, draining), and rebuilds the record of a leased machine that Redis lost.
"""

from __future__ import annotations

import enum


class PoolState(enum.StrEnum):
    BOOTING = "booting"
    READY = "ready"
    PENDING = "pending"
    LEASED = "leased"
    RECYCLING = "recycling"
    DRAINING = "draining"
    MOVING = "moving"

    def can_become(self, target: PoolState) -> bool:
        return target in TRANSITIONS[self]


TRANSITIONS: dict[PoolState, frozenset[PoolState]] = {
    PoolState.BOOTING: frozenset({PoolState.READY, PoolState.LEASED}),
    PoolState.READY: frozenset({PoolState.PENDING, PoolState.DRAINING, PoolState.MOVING}),
    PoolState.PENDING: frozenset({PoolState.LEASED, PoolState.READY, PoolState.RECYCLING}),
    PoolState.LEASED: frozenset({PoolState.RECYCLING}),
    PoolState.RECYCLING: frozenset({PoolState.READY}),
    PoolState.DRAINING: frozenset(),
    PoolState.MOVING: frozenset({PoolState.READY}),
}


class Tier(enum.StrEnum):
    """Where a ready machine waits, fastest (and dearest) first. A lease takes hot, then
    suspended, then stopped; only a hot machine is served at once (201), the others are woken
    first (202)."""

    HOT = "hot"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


TIERS: tuple[Tier, ...] = (Tier.HOT, Tier.SUSPENDED, Tier.STOPPED)

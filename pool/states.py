"""The states of a machine in the pool (Redis), separate from the provider's own states.

    booting ──▶ ready ──▶ pending ──▶ leased ──▶ recycling ──▶ ready
                  │          │                       │
                  │          └──▶ ready (never committed: nobody saw it)
                  └──▶ draining ──▶ (destroyed)      └──▶ (destroyed)

The transitions happen inside Lua scripts (pool/lua/), which check the state and the fencing
epoch atomically; this table is what those scripts implement and what the tests hold them to.
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

    def can_become(self, target: PoolState) -> bool:
        return target in TRANSITIONS[self]


TRANSITIONS: dict[PoolState, frozenset[PoolState]] = {
    PoolState.BOOTING: frozenset({PoolState.READY}),
    PoolState.READY: frozenset({PoolState.PENDING, PoolState.DRAINING}),
    PoolState.PENDING: frozenset({PoolState.LEASED, PoolState.READY, PoolState.RECYCLING}),
    PoolState.LEASED: frozenset({PoolState.RECYCLING}),
    PoolState.RECYCLING: frozenset({PoolState.READY}),
    PoolState.DRAINING: frozenset(),
}

from __future__ import annotations

import pytest

from pool.core.states import TRANSITIONS, PoolState
from sql.states import IllegalTransition, SessionStatus


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (SessionStatus.BOOTING, SessionStatus.ACTIVE, True),
        (SessionStatus.BOOTING, SessionStatus.ENDED, True),
        (SessionStatus.BOOTING, SessionStatus.FAILED, True),
        (SessionStatus.ACTIVE, SessionStatus.ENDED, True),
        (SessionStatus.ACTIVE, SessionStatus.FAILED, True),
        (SessionStatus.ACTIVE, SessionStatus.BOOTING, False),
        (SessionStatus.ENDED, SessionStatus.ACTIVE, False),
        (SessionStatus.ENDED, SessionStatus.FAILED, False),
        (SessionStatus.FAILED, SessionStatus.ACTIVE, False),
    ],
)
def test_session_transitions(source: SessionStatus, target: SessionStatus, allowed: bool) -> None:
    assert source.can_become(target) is allowed
    if allowed:
        assert source.check_transition(target) is target
    else:
        with pytest.raises(IllegalTransition):
            source.check_transition(target)


def test_sources_of_is_what_sql_may_move_from() -> None:
    assert set(SessionStatus.sources_of(SessionStatus.ENDED)) == {"booting", "active"}
    assert SessionStatus.sources_of(SessionStatus.BOOTING) == ()


def test_only_booting_and_active_are_live() -> None:
    assert {s for s in SessionStatus if s.is_live} == {SessionStatus.BOOTING, SessionStatus.ACTIVE}


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (PoolState.READY, PoolState.PENDING, True),
        (PoolState.PENDING, PoolState.LEASED, True),
        (PoolState.PENDING, PoolState.READY, True),
        (PoolState.LEASED, PoolState.RECYCLING, True),
        (PoolState.LEASED, PoolState.READY, False),  # never handed out again unreset
        (PoolState.RECYCLING, PoolState.READY, True),
        (PoolState.DRAINING, PoolState.READY, False),
        (PoolState.BOOTING, PoolState.LEASED, True),  # an on-demand boot, claimed (claim_leased)
        (PoolState.BOOTING, PoolState.PENDING, False),  # only a ready machine is leased
        (PoolState.READY, PoolState.MOVING, True),  # into another tier, or resized
        (PoolState.MOVING, PoolState.READY, True),
        (PoolState.MOVING, PoolState.PENDING, False),  # never leased mid-move
    ],
)
def test_pool_transitions(source: PoolState, target: PoolState, allowed: bool) -> None:
    assert source.can_become(target) is allowed


def test_every_pool_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(PoolState)

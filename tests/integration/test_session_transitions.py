"""Session status changes in Postgres follow the transition table of `sql.states`: a move the
table forbids raises before anything is written, and a session that already left the states a
move starts from is left exactly as it was. Real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from app.settings import Settings
from sql.sessions import (
    activate_session,
    attach_machine,
    end_session,
    get_session,
    live_session_ids,
    record_session,
)
from sql.states import IllegalTransition, SessionStatus
from tests.conftest import User, make_user, new_session

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[Conn]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url or "", autocommit=True
    ) as connection:
        yield connection


@pytest.fixture
def user(settings: Settings) -> User:
    return make_user(settings.database_url or "")


async def _record(conn: Conn, user: User, *, machine: str | None, wake: bool = False) -> uuid.UUID:
    session_id = uuid.uuid4()
    await record_session(
        conn,
        new_session(session_id, user.id, user.project_id),
        max_concurrent=5,
        machine_id=machine,
        epoch=1 if machine else None,
        wake=wake,
    )
    return session_id


async def _snapshot(conn: Conn, session_id: uuid.UUID, user: User) -> tuple[Any, ...]:
    """Everything a status change writes: the row, the ledger, the timeline and the slot."""
    row = await (
        await conn.execute(
            "SELECT status, container_id, lease_epoch, ended_at, end_reason "
            "FROM preview_sessions WHERE id = %s",
            (session_id,),
        )
    ).fetchone()
    ledger = await (
        await conn.execute(
            "SELECT machine_id, epoch, released_at FROM machine_leases WHERE session_id = %s",
            (session_id,),
        )
    ).fetchall()
    events = await (
        await conn.execute(
            "SELECT kind FROM session_events WHERE session_id = %s ORDER BY id", (session_id,)
        )
    ).fetchall()
    slot = await (
        await conn.execute("SELECT live FROM user_live_sessions WHERE user_id = %s", (user.id,))
    ).fetchone()
    return row, ledger, events, slot


async def test_rows_carry_the_status_enum_and_the_machine_id(conn: Conn, user: User) -> None:
    session_id = await _record(conn, user, machine="m-rows")
    row = await get_session(conn, session_id)
    assert row is not None
    assert row.status is SessionStatus.ACTIVE
    assert row.machine_id == "m-rows"
    ended = await end_session(conn, session_id, reason="deleted")
    assert ended is not None
    assert (ended.machine_id, ended.status) == ("m-rows", SessionStatus.ENDED)
    after = await get_session(conn, session_id)
    assert after is not None
    assert after.status is SessionStatus.ENDED


@pytest.mark.parametrize("target", [SessionStatus.ACTIVE, SessionStatus.BOOTING])
async def test_ending_into_a_live_state_raises_and_writes_nothing(
    conn: Conn, user: User, target: SessionStatus
) -> None:
    booting = await _record(conn, user, machine=None)
    active = await _record(conn, user, machine="m-live")
    before = {s: await _snapshot(conn, s, user) for s in (booting, active)}
    for session_id in (booting, active):
        with pytest.raises(IllegalTransition):
            await end_session(conn, session_id, reason="bogus", status=target)
    assert {s: await _snapshot(conn, s, user) for s in (booting, active)} == before
    assert await live_session_ids(conn, user.id) == {booting, active}


async def test_an_ended_session_keeps_its_first_end(conn: Conn, user: User) -> None:
    other = await _record(conn, user, machine="m-other")  # keeps the slot counter above 0
    session_id = await _record(conn, user, machine="m-first")
    assert await end_session(conn, session_id, reason="deleted") is not None
    before = await _snapshot(conn, session_id, user)
    assert before[0][0] == "ended" and before[3] == (1,)
    for status in (SessionStatus.FAILED, SessionStatus.ENDED):
        assert await end_session(conn, session_id, reason="late", status=status) is None
    assert await _snapshot(conn, session_id, user) == before
    assert await live_session_ids(conn, user.id) == {other}


async def test_an_ended_session_is_never_brought_back(conn: Conn, user: User) -> None:
    on_demand = await _record(conn, user, machine=None)
    waking = await _record(conn, user, machine="m-wake", wake=True)
    for session_id in (on_demand, waking):
        await end_session(conn, session_id, reason="boot_timeout", status=SessionStatus.FAILED)
    before = {s: await _snapshot(conn, s, user) for s in (on_demand, waking)}

    assert await attach_machine(conn, on_demand, "m-late", 7) is None
    assert await activate_session(conn, waking, "m-wake", 1) is None

    assert {s: await _snapshot(conn, s, user) for s in (on_demand, waking)} == before
    assert before[on_demand][1] == []  # the late machine got no ledger row


async def test_a_booting_session_becomes_active_once(conn: Conn, user: User) -> None:
    session_id = await _record(conn, user, machine=None)
    attached = await attach_machine(conn, session_id, "m-boot", 3)
    assert attached is not None
    assert (attached.status, attached.machine_id, attached.lease_epoch) == (
        SessionStatus.ACTIVE,
        "m-boot",
        3,
    )
    before = await _snapshot(conn, session_id, user)
    # A duplicate delivery of the boot job: active cannot become active again.
    assert await attach_machine(conn, session_id, "m-boot-2", 4) is None
    assert await _snapshot(conn, session_id, user) == before

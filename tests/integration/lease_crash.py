"""An API process that dies mid-lease, for tests/integration/test_lease_fencing.py.

    python -m tests.integration.lease_crash REDIS_URL DATABASE_URL USER PROJECT SESSION \
        PENDING_TTL_MS {reserve|commit}

takes the real Redis reservation (pool.store.leasing.LeaseBroker.lease), with `commit` also records
the session in Postgres (sql.sessions.record_session), prints the lease as one JSON line, and
then SIGKILLs itself before promoting: exactly what a web process dying there leaves behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid

import psycopg
from redis.asyncio import Redis

from pool.store.leasing import LeaseBroker, Leased, LeaseRequest
from sql.sessions import record_session
from tests.conftest import new_session

TEMPLATE, REGION = "react-web", "local"


async def lease_then_die(argv: list[str]) -> None:
    redis_url, database_url, user, project, session, ttl_ms, mode = argv
    user_id, session_id = uuid.UUID(user), uuid.UUID(session)
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    broker = LeaseBroker(redis, pending_ttl_ms=int(ttl_ms), ondemand_max=0)
    outcome = await broker.lease(
        LeaseRequest(
            template=TEMPLATE,
            region=REGION,
            user_id=user_id,
            session_id=session_id,
            max_concurrent=3,
            creations_per_minute=20,
            creation_burst=10,
        )
    )
    assert isinstance(outcome, Leased), outcome
    if mode == "commit":
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await record_session(
                conn,
                new_session(session_id, user_id, uuid.UUID(project), TEMPLATE, REGION),
                max_concurrent=3,
                machine_id=outcome.machine_id,
                epoch=outcome.epoch,
            )
    print(json.dumps({"machine": outcome.machine_id, "epoch": outcome.epoch}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(lease_then_die(sys.argv[1:]))

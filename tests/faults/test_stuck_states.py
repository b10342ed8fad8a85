"""Stuck states heal by themselves within the documented bound (docs/architecture.md, "Stuck
states and crashed processes"): a worker SIGKILLed mid-recycle or mid-refill, Redis emptied
during a refill, creates for a broken template.

Real processes on the real stores: supervised workers (tests/faults/stuck_worker.py, the code
the `worker` command runs) with local machines, on this run's Redis database and a Postgres
database of its own. The bounds are set small: the job timeout (which bounds how long a
transient state may last) to 10 s, reconcile every 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from arq.connections import RedisSettings, create_pool
from redis.asyncio import Redis

from app.settings import Settings
from pool.core.provider import Machine
from pool.providers.local import LocalProvider
from pool.services.lifecycle import release_session_machine
from pool.services.metrics import NullMetrics
from pool.services.project_files import FileKeeper, PostgresProjectFiles
from pool.store.leasing import LeaseBroker, Leased, LeaseRequest
from pool.store.queue import JobQueue
from sql.database import open_pool
from sql.sessions import end_session, record_session
from tests.conftest import JWT_SECRET, REDIS_URL, TOKEN_SECRET, make_user, new_session
from tests.integration.helpers import CLI, POOL, REPO_ROOT, destroy_all_machines, stop_process
from tests.redis_claim import flush as flush_redis
from tests.redis_replies import sync_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOB_TIMEOUT = 10
RECONCILE_INTERVAL = 2
ORPHAN_GRACE = 3
# What the docs promise: a machine left in a transient state by a dead worker is replaced within
# the job timeout plus one reconcile interval; SLACK covers the reconcile run itself and the
# polling of this test on a busy two-core machine.
HEALED_WITHIN = JOB_TIMEOUT + RECONCILE_INTERVAL
SLACK = 5.0
TRANSIENT = {"booting", "recycling", "moving", "draining"}


@pytest.fixture
def base_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "machines"
    try:
        yield path
    finally:
        asyncio.run(destroy_all_machines(path))


@contextlib.contextmanager
def worker(
    settings: Settings, base_dir: Path, log: Path, pool: tuple[int, int] = (1, 1), **extra: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """A supervised worker process; SIGTERMed at the end unless the test killed it."""
    config = log.with_suffix(".json")
    config.write_text(
        json.dumps(
            {
                "database_url": settings.database_url,
                "redis_url": REDIS_URL,
                "base_dir": str(base_dir),
                "pool_min": pool[0],
                "pool_max": pool[1],
                "job_timeout": JOB_TIMEOUT,
                "reconcile_interval": RECONCILE_INTERVAL,
                "orphan_grace": ORPHAN_GRACE,
                **extra,
            }
        )
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.stuck_worker", str(config)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        stop_process(process)


def _wait(check: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            raise AssertionError(f"not within {timeout:.0f}s: {what}\n{tail}")
        time.sleep(0.1)


def _records() -> dict[str, dict[str, str]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return {
            key.removeprefix("po:m:"): sync_reply(client.hgetall(key))
            for key in client.scan_iter(match="po:m:*", count=1000)
        }
    finally:
        client.close()


def _provided(base_dir: Path) -> dict[str, Machine]:
    async def listed() -> dict[str, Machine]:
        provider = LocalProvider(base_dir)
        try:
            return {m.id: m for m in await provider.list()}
        finally:
            await provider.aclose()

    return asyncio.run(listed())


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _disagreement(base_dir: Path, ready: int, leased: frozenset[str] = frozenset()) -> str:
    """What keeps the pool from being healed ('' when it is): `ready` hot machines plus the
    `leased` ones, a provider machine for every record and a record for every provider machine,
    each record with its machine's token hash, nothing in a transient state."""
    records, machines = _records(), _provided(base_dir)
    if set(records) != set(machines):
        return f"records {sorted(records)} but machines {sorted(machines)}"
    states = {m: r.get("state", "") for m, r in records.items()}
    if sorted(s for m, s in states.items() if m not in leased) != ["ready"] * ready:
        return f"states {states}"
    if any(states[m] != "leased" for m in leased):
        return f"states {states}, expected {sorted(leased)} leased"
    for machine_id, record in records.items():
        if record.get("token_sha256") != _sha256(machines[machine_id].metadata["token"]):
            return f"{machine_id} has not its machine's token hash: {record}"
    return ""


def _healed(base_dir: Path, ready: int, leased: frozenset[str] = frozenset()) -> bool:
    return not _disagreement(base_dir, ready, leased)


def _ready_ids() -> list[str]:
    return [m for m, r in _records().items() if r.get("state") == "ready"]


async def _lease(database_url: str, *, release: bool) -> tuple[str, uuid.UUID, int]:
    """What the API does for a session (reserve, commit, promote), and with `release` what it
    does when the session is deleted (end it, release the machine, queue its recycle)."""
    user = make_user(database_url)
    client: Redis = Redis.from_url(REDIS_URL, decode_responses=True)
    arq = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    db = await open_pool(database_url, min_size=1, max_size=2)
    try:
        broker = LeaseBroker(client, pending_ttl_ms=10_000, ondemand_max=0)
        session_id = uuid.uuid4()
        leased = await broker.lease(
            LeaseRequest(POOL.template, POOL.region, user.id, session_id, 3, 60, 10)
        )
        assert isinstance(leased, Leased), leased
        async with db.connection() as conn:
            await record_session(
                conn,
                new_session(session_id, user.id, user.project_id, POOL.template, POOL.region),
                max_concurrent=3,
                machine_id=leased.machine_id,
                epoch=leased.epoch,
            )
        assert await broker.promote(leased.machine_id, leased.epoch, session_id)
        if release:  # as app.leases.end_session does
            async with db.connection() as conn:
                ended = await end_session(conn, session_id, reason="deleted")
            assert ended is not None
            keeper = FileKeeper(PostgresProjectFiles(db), NullMetrics())
            await release_session_machine(broker, ended, JobQueue(arq).recycle, keeper=keeper)
        return leased.machine_id, session_id, leased.epoch
    finally:
        await db.close()
        await arq.aclose()
        await client.aclose()


def test_a_worker_killed_mid_recycle_leaves_no_machine_recycling_past_the_bound(
    settings: Settings, base_dir: Path, tmp_path: Path
) -> None:
    hold, marker = tmp_path / "hold", tmp_path / "marker"
    hold.touch()
    log = tmp_path / "worker.log"
    with worker(settings, base_dir, log, step="reset", hold=str(hold), marker=str(marker)) as first:
        [machine] = _wait(_ready_ids, 30, "a ready machine", log)
        leased, _, _ = asyncio.run(_lease(settings.database_url or "", release=True))
        assert leased == machine
        _wait(marker.exists, 30, "the recycle to reach the reset", log)
        assert marker.read_text() == machine
        assert _records()[machine]["state"] == "recycling"
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = time.monotonic()

    with worker(settings, base_dir, tmp_path / "second.log"):
        _wait(
            lambda: _records().get(machine, {}).get("state") != "recycling",
            HEALED_WITHIN + SLACK,
            "the stranded machine to leave `recycling`",
            tmp_path / "second.log",
        )
        healed_after = time.monotonic() - killed
        _wait(
            lambda: _healed(base_dir, ready=1),
            JOB_TIMEOUT + 30,
            "one ready machine, no orphan, no transient state",
            tmp_path / "second.log",
        )
    assert healed_after <= HEALED_WITHIN + SLACK
    assert not TRANSIENT & {r.get("state") for r in _records().values()}


def test_a_worker_killed_mid_refill_leaves_no_machine_booting_past_the_bound(
    settings: Settings, base_dir: Path, tmp_path: Path
) -> None:
    hold, marker = tmp_path / "hold", tmp_path / "marker"
    hold.touch()
    log = tmp_path / "worker.log"
    with worker(settings, base_dir, log, step="boot", hold=str(hold), marker=str(marker)) as first:
        _wait(marker.exists, 30, "a create to reach its machine's boot", log)
        machine = marker.read_text()
        assert _records()[machine]["state"] == "booting"
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = time.monotonic()
    assert machine in _provided(base_dir)  # up and running, but nobody will make it ready

    with worker(settings, base_dir, tmp_path / "second.log"):
        _wait(
            lambda: machine not in _records() and machine not in _provided(base_dir),
            HEALED_WITHIN + SLACK,
            "the stranded booting machine to be destroyed",
            tmp_path / "second.log",
        )
        healed_after = time.monotonic() - killed
        # The killed resize held the pool's lock: it expires after the job timeout too.
        _wait(
            lambda: _healed(base_dir, ready=1),
            JOB_TIMEOUT + 30,
            "the pool refilled: one ready machine, no orphan",
            tmp_path / "second.log",
        )
    assert healed_after <= HEALED_WITHIN + SLACK


def test_redis_emptied_during_a_refill_leaves_no_tokenless_record_and_no_orphan(
    settings: Settings, base_dir: Path, tmp_path: Path
) -> None:
    database_url = settings.database_url or ""
    hold, marker = tmp_path / "hold", tmp_path / "marker"
    log = tmp_path / "worker.log"
    tokenless: list[dict[str, dict[str, str]]] = []
    watching = threading.Event()

    def watch() -> None:
        while watching.is_set():
            seen = {m: r for m, r in _records().items() if "token_sha256" not in r}
            if seen:
                tokenless.append(seen)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    with worker(
        settings, base_dir, log, pool=(2, 2), step="boot", hold=str(hold), marker=str(marker)
    ):
        _wait(lambda: len(_ready_ids()) == 2, 40, "two ready machines", log)
        hold.touch()  # the next create stops once its machine is up
        leased, session_id, epoch = asyncio.run(_lease(database_url, release=False))
        booting = _wait(lambda: marker.exists() and marker.read_text(), 30, "a refill", log)
        assert _records()[booting]["state"] == "booting"

        flush_redis(REDIS_URL)  # Redis restarted empty: this run's own database only
        watching.set()
        watcher.start()
        hold.unlink()  # the refill goes on, into a Redis that lost its records

        _wait(
            lambda: _records().get(leased, {}).get("state") == "leased",
            ORPHAN_GRACE + RECONCILE_INTERVAL + SLACK,
            "the leased machine's record rebuilt",
            log,
        )
        _wait(
            lambda: _healed(base_dir, ready=2, leased=frozenset({leased})),
            JOB_TIMEOUT + 40,
            "two ready machines and the leased one, each with its token hash, no orphan",
            log,
        )
        watching.clear()
        watcher.join()

    assert tokenless == []
    rebuilt = _records()[leased]
    assert (rebuilt["session"], rebuilt["epoch"]) == (str(session_id), str(epoch))
    assert booting not in _provided(base_dir)  # its record was lost: replaced, not pooled
    with psycopg.connect(database_url) as conn:
        status = conn.execute(
            "SELECT status FROM preview_sessions WHERE id = %s", (session_id,)
        ).fetchone()
    assert status == ("active",)  # the session goes on, on its machine


def test_creates_for_a_broken_template_back_off_and_recover(
    settings: Settings, base_dir: Path, tmp_path: Path
) -> None:
    broken, starts = tmp_path / "broken", tmp_path / "starts"
    broken.touch()
    python = tmp_path / "python"
    # Machines of this "template" exit at once while `broken` exists (their log says why).
    python.write_text(
        "#!/bin/sh\n"
        f"date +%s.%N >> {starts}\n"
        f'if [ -e {broken} ]; then echo "template react-web is broken" >&2; exit 1; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    log = tmp_path / "worker.log"
    with worker(settings, base_dir, log, python=str(python), confined=False, backoff=[1.0, 4.0]):
        backoff = _wait(
            lambda: _failing_runs(settings, tmp_path, at_least=4),
            40,
            "four failed create runs in a row in `pool status`",
            log,
        )
        assert "template react-web is broken" in backoff["error"]
        tried = [float(line) for line in starts.read_text().split()]
        # Without a backoff a create runs at every resize (each second); with it, each run
        # waits twice as long as the last after its failure: 1, 2, then 4 s (the cap).
        assert len(tried) <= backoff["failures"] + 1, tried
        for earlier, later, wait in zip(tried, tried[1:], [1.0, 2.0, 4.0, 4.0], strict=False):
            assert later - earlier >= wait, tried

        broken.unlink()  # the template works again
        fixed = time.monotonic()
        # Back within the cap and a resize run (plus a boot).
        _wait(lambda: _healed(base_dir, ready=1), 4.0 + 15, "a ready machine", log)
        recovered_after = time.monotonic() - fixed
        assert _pool_status(settings, tmp_path)["createBackoff"] is None
    assert recovered_after <= 4.0 + 15


def _failing_runs(settings: Settings, tmp_path: Path, at_least: int) -> dict[str, Any] | None:
    backoff: dict[str, Any] | None = _pool_status(settings, tmp_path)["createBackoff"]
    return backoff if backoff is not None and backoff["failures"] >= at_least else None


def _pool_status(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    """The operator's view (`preview-orchestrator pool status --json`) of the test's pool."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": REDIS_URL,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "PREVIEW_TOKEN_SECRET": TOKEN_SECRET,
        "PREVIEW_DATA_DIR": str(tmp_path / "cli"),
    }
    shown = subprocess.run(
        [str(CLI), "pool", "status", "--json"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    [row] = [r for r in json.loads(shown.stdout) if (r["template"], r["region"]) == POOL_KEY]
    return dict(row)


POOL_KEY = (POOL.template, POOL.region)

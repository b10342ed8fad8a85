"""A project's last files between its sessions: kept when a session ends, and given to the next
session of the project that asks for them (POST /api/preview/sessions {"restore": true}).

Keeping never stands in the way of an end. It runs after the end was recorded (Postgres) and
announced (Redis), and a failure (a store down, a timeout, a refusal) is logged and counted,
never raised. What is kept is what announce_end took from the log in the script that ended it:
exactly the files that were acknowledged, values verbatim (never decoded here: how the edit log
stores a binary file is its own business).

Restoring starts the new session's log from those values (pool.edits.restored_log) before its
machine is assigned, then waits until the machine applied them (`wait_hydrated`), so a session
is not reported ready with the template's files. Kept files that cannot be restored (over the
snapshot's caps, not UTF-8, a path twice: a corrupted row) are dropped, logged and counted: the
session starts from the template instead.

`ProjectFiles` is the interface the rest of the service sees; `PostgresProjectFiles` keeps the
files in Postgres (docs/architecture.md, "Reopening a project", says why). An object store
would implement the same four calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from pool.edits.edit_log import EditLog, EditLogLimits, EndedLog, push_snapshot
from pool.edits.restored_log import restored_seq
from pool.services.metrics import Metrics
from pool.store.keys import DEFAULT_PREFIX
from sql import project_files
from sql.project_files import StoredFiles
from sql.sessions import EndedSession

log = logging.getLogger(__name__)

# The longest an end waits for its files to be kept: past it they are not (logged, counted).
KEEP_TIMEOUT_SECONDS = 10.0
# How long a restored session waits for its machine to apply its files (the settings' default).
RESTORE_TIMEOUT_SECONDS = 15.0
HYDRATE_POLL_SECONDS = 0.05


class ProjectFiles(Protocol):
    async def keep(
        self, project_id: uuid.UUID, session_id: uuid.UUID, seq: int, values: Mapping[str, bytes]
    ) -> bool:
        """Keep `values` as the project's last files; False when a session of the project that
        ended later is kept already."""
        ...

    async def last(
        self, project_id: uuid.UUID, template: str, *, max_age_seconds: float
    ) -> StoredFiles | None:
        """The project's last files, unless older than `max_age_seconds`."""
        ...

    async def drop(self, project_id: uuid.UUID, session_id: uuid.UUID) -> None:
        """Forget the project's files kept from that session (not a later one's)."""
        ...

    async def prune(self, *, max_age_seconds: float) -> int:
        """Forget every project's files older than `max_age_seconds`; how many."""
        ...


class PostgresProjectFiles:
    def __init__(self, db: AsyncConnectionPool) -> None:
        self._db = db

    async def keep(
        self, project_id: uuid.UUID, session_id: uuid.UUID, seq: int, values: Mapping[str, bytes]
    ) -> bool:
        async with self._db.connection() as conn:
            return await project_files.keep_files(conn, project_id, session_id, seq, values)

    async def last(
        self, project_id: uuid.UUID, template: str, *, max_age_seconds: float
    ) -> StoredFiles | None:
        async with self._db.connection() as conn:
            return await project_files.last_files(
                conn, project_id, template, max_age_seconds=max_age_seconds
            )

    async def drop(self, project_id: uuid.UUID, session_id: uuid.UUID) -> None:
        async with self._db.connection() as conn:
            await project_files.drop_files(conn, project_id, session_id)

    async def prune(self, *, max_age_seconds: float) -> int:
        async with self._db.connection() as conn:
            return await project_files.prune_files(conn, max_age_seconds=max_age_seconds)


@dataclass(frozen=True)
class FileKeeper:
    """What an end needs to keep its session's files: where, and what to count."""

    store: ProjectFiles
    metrics: Metrics
    limits: EditLogLimits = field(default_factory=EditLogLimits)

    async def keep_ended(self, ended: EndedSession, files: EndedLog) -> bool:
        """Keep what the session's log held at its end as its project's last files. Never
        raises: True when kept, False (logged and counted) when not."""
        if not files.values:
            return False  # nothing written (or announced before): the project's files stay
        values = {path: value.encode() for path, value in files.values.items()}
        problem = _over_caps(values, self.limits)
        if problem is not None:
            log.warning("session %s: files not kept: %s", ended.id, problem)
            self.metrics.project_files("keep_refused")
            return False
        try:
            async with asyncio.timeout(KEEP_TIMEOUT_SECONDS):
                kept = await self.store.keep(ended.project_id, ended.id, files.seq, values)
        except Exception as exc:  # whatever the store raises, the session has ended all the same
            log.warning("session %s: files not kept: %s", ended.id, exc or type(exc).__name__)
            self.metrics.project_files("keep_failed")
            return False
        self.metrics.project_files("kept" if kept else "keep_superseded")
        return kept


class UnrestorableFiles(ValueError):
    """Kept files that cannot start a session: over the snapshot's caps, or corrupted."""


@dataclass(frozen=True)
class Restorable:
    """A project's last files, checked: the values to start a new session's log with."""

    project_id: uuid.UUID
    session_id: uuid.UUID  # the ended session they were kept from
    ended_at: datetime
    values: dict[str, str]


def restorable_values(stored: StoredFiles, limits: EditLogLimits) -> dict[str, str]:
    """The stored values as the edit log holds them; raises UnrestorableFiles when they cannot
    be (the checks an append would make, and the signs of a corrupted row)."""
    values = dict(stored.entries)
    if len(values) != len(stored.entries):
        raise UnrestorableFiles("a path appears twice")
    problem = _over_caps(values, limits)
    if problem is not None:
        raise UnrestorableFiles(problem)
    try:
        return {path: value.decode() for path, value in values.items()}
    except UnicodeDecodeError as exc:
        raise UnrestorableFiles(f"a value is not UTF-8 ({exc.reason})") from None


async def files_to_restore(
    store: ProjectFiles,
    metrics: Metrics,
    project_id: uuid.UUID,
    template: str,
    *,
    max_age_seconds: float,
    limits: EditLogLimits,
) -> Restorable | None:
    """The project's last files if there are some, not expired and restorable; None otherwise
    (files that cannot be restored are dropped, logged and counted)."""
    stored = await store.last(project_id, template, max_age_seconds=max_age_seconds)
    if stored is None:
        return None
    try:
        values = restorable_values(stored, limits)
    except UnrestorableFiles as exc:
        log.warning(
            "project %s: files kept from session %s dropped: %s",
            project_id,
            stored.session_id,
            exc,
        )
        metrics.project_files("restore_refused")
        await store.drop(project_id, stored.session_id)
        return None
    if not values:
        return None
    return Restorable(project_id, stored.session_id, stored.ended_at, values)


async def wait_hydrated(
    edits: EditLog, session_id: str, machine_id: str, seq: int, *, timeout: float
) -> bool:
    """Send the session's files to its machine and wait until the machine applied `seq` (the
    seq its log was started from kept files at): True, or False after `timeout`. The files
    also reach a machine whose agent connects later: the gateway hydrates every machine that
    is new to a session whose stream cannot bring it up to date."""
    await push_snapshot(edits, session_id, machine_id)
    deadline = time.monotonic() + timeout
    while await edits.applied(session_id) < seq:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(HYDRATE_POLL_SECONDS)
    return True


async def hydrate_before_ready(
    edits: EditLog,
    metrics: Metrics,
    session_id: str,
    machine_id: str,
    seq: int,
    *,
    timeout: float,
) -> bool:
    """wait_hydrated, timed and counted: the step between a restored session's machine and
    the session reported ready. A machine that takes longer than `timeout` does not hold the
    session back (logged, counted): the files reach it all the same, and the editors see them
    applied when they are."""
    began = time.monotonic()
    if await wait_hydrated(edits, session_id, machine_id, seq, timeout=timeout):
        metrics.timing("project_files.hydrate", (time.monotonic() - began) * 1000)
        return True
    log.warning(
        "session %s: machine %s did not apply the restored files within %ss",
        session_id,
        machine_id,
        timeout,
    )
    metrics.project_files("hydrate_timeout")
    return False


async def hydrate_if_restored(
    redis: Redis,
    metrics: Metrics,
    session_id: str,
    machine_id: str,
    *,
    timeout: float,
    prefix: str = DEFAULT_PREFIX,
) -> bool:
    """For a booting session (a wake, an on-demand boot) about to become active: if its log was
    started from kept files, hydrate_before_ready. False only when that timed out."""
    seq = await restored_seq(redis, session_id, prefix=prefix)
    if seq == 0:
        return True
    edits = EditLog(redis, prefix=prefix)
    return await hydrate_before_ready(edits, metrics, session_id, machine_id, seq, timeout=timeout)


def _over_caps(values: Mapping[str, bytes], limits: EditLogLimits) -> str | None:
    """Why `values` could not be a session's snapshot (the caps append_patch.lua applies, in
    its measure: bytes of each value), or None."""
    size = sum(len(value) for value in values.values())
    if size > limits.snapshot_bytes:
        return f"{size} bytes, over the snapshot's cap of {limits.snapshot_bytes}"
    if len(values) > limits.snapshot_files:
        return f"{len(values)} files, over the snapshot's cap of {limits.snapshot_files}"
    return None

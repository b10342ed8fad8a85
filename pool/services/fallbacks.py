"""Recording that a session failed to start, so its editor falls back to Appetize
(sql.fallbacks; docs/rollout.md, "Fallback"). The worker records boots and wakes that failed;
the lease path (app.rollout.fallback) records the refusals it answers itself."""

from __future__ import annotations

import logging
import uuid

from pool.services.context import PoolServices
from sql import sessions
from sql.errors import DataError
from sql.fallbacks import record_fallback

log = logging.getLogger(__name__)

BOOT_FAILED = "boot_failed"
WAKE_FAILED = "wake_failed"
# End reasons of a session that never started: its editor is told to use Appetize.
START_FAILURES = frozenset({BOOT_FAILED, WAKE_FAILED})


async def record_start_failure(services: PoolServices, session_id: uuid.UUID, reason: str) -> None:
    """Best effort: the session has already failed and its editor heard so; a fallback that
    could not be written only loses this row (the editor's answer carried the fallback)."""
    try:
        async with services.db.connection() as conn:
            session = await sessions.get_session(conn, session_id)
            if session is None:
                return
            await record_fallback(
                conn,
                project_id=session.project_id,
                user_id=session.user_id,
                reason=reason,
                session_id=session_id,
                detail={"template": session.template, "region": session.region},
            )
    except (DataError, OSError) as exc:
        log.error("could not record the fallback of session %s: %s", session_id, exc)

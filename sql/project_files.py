"""A project's last files (migration 0010, `project_files`): what the edit log of its last ended
session held, kept so that the next session can start from them.

The values are kept as bytes and never read here: they are the edit log's snapshot values
(pool.edits), copied verbatim by pool.services.project_files, which also checks them on the way
back. Age is measured from the session's end, at read time, so a change of the retention applies
to every row at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sql.sessions import Connection, translated_errors


@dataclass(frozen=True)
class StoredFiles:
    project_id: uuid.UUID
    session_id: uuid.UUID
    seq: int  # the head of the ended session's log
    # (path, value) as stored, verbatim; the table's CHECK keeps the two arrays paired, but
    # nothing here stops a path from appearing twice in a row written by hand
    entries: list[tuple[str, bytes]]
    ended_at: datetime


async def keep_files(
    conn: Connection,
    project_id: uuid.UUID,
    session_id: uuid.UUID,
    seq: int,
    values: Mapping[str, bytes],
) -> bool:
    """Keep `values` as the project's last files, in place of an earlier session's. False when
    nothing was written: a session of the project that ended later is already kept (this end
    was announced late), or the session is not one of the project's."""
    paths = list(values)
    contents = [values[path] for path in paths]
    async with translated_errors():
        cursor = await conn.execute(
            """INSERT INTO project_files
                   (project_id, session_id, seq, paths, contents, bytes, ended_at)
               SELECT s.project_id, s.id, %(seq)s, %(paths)s, %(contents)s, %(bytes)s,
                   coalesce(s.ended_at, now())
               FROM preview_sessions s WHERE s.id = %(session)s AND s.project_id = %(project)s
               ON CONFLICT (project_id) DO UPDATE SET
                   session_id = EXCLUDED.session_id, seq = EXCLUDED.seq, paths = EXCLUDED.paths,
                   contents = EXCLUDED.contents, bytes = EXCLUDED.bytes,
                   ended_at = EXCLUDED.ended_at, saved_at = now()
               WHERE project_files.ended_at <= EXCLUDED.ended_at""",
            {
                "project": project_id,
                "session": session_id,
                "seq": seq,
                "paths": paths,
                "contents": contents,
                "bytes": sum(len(value) for value in contents),
            },
        )
        return cursor.rowcount > 0


async def last_files(
    conn: Connection, project_id: uuid.UUID, template: str, *, max_age_seconds: float
) -> StoredFiles | None:
    """The project's last files, unless they are older than `max_age_seconds`, were kept from
    a session of another template (an expo project's files over a Vite template would be the
    wrong project), or there are none."""
    async with translated_errors():
        cursor = await conn.execute(
            """SELECT f.session_id, f.seq, f.paths, f.contents, f.ended_at
               FROM project_files f JOIN preview_sessions s ON s.id = f.session_id
               WHERE f.project_id = %s AND s.template = %s
                 AND f.ended_at > now() - make_interval(secs => %s)""",
            (project_id, template, max_age_seconds),
        )
        row = await cursor.fetchone()
    if row is None:
        return None
    session_id, seq, paths, contents, ended_at = row
    entries = [(str(path), bytes(value)) for path, value in zip(paths, contents, strict=True)]
    return StoredFiles(project_id, session_id, int(seq), entries, ended_at)


async def drop_files(conn: Connection, project_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    """Forget the project's files kept from `session_id` (they could not be restored); files
    a later session kept in the meantime stay."""
    async with translated_errors():
        cursor = await conn.execute(
            "DELETE FROM project_files WHERE project_id = %s AND session_id = %s",
            (project_id, session_id),
        )
        return cursor.rowcount > 0


async def prune_files(conn: Connection, *, max_age_seconds: float) -> int:
    """Delete every project's files older than `max_age_seconds`; how many went."""
    async with translated_errors():
        cursor = await conn.execute(
            "DELETE FROM project_files WHERE ended_at <= now() - make_interval(secs => %s)",
            (max_age_seconds,),
        )
        return cursor.rowcount

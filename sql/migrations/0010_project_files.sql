-- A project's last files (docs/architecture.md, "Reopening a project"): when a session ends, the
-- files its edit log held (the Redis snapshot hash `snap:{session}`, every value copied verbatim:
-- contents, deletion tombstones, however the edit log encodes a binary file) are kept here, one
-- row per project, so that the next session of the project can start from them
-- (POST /api/preview/sessions {"restore": true}). Kept PREVIEW_SNAPSHOT_RETENTION_HOURS after
-- the session ended: older rows are never read, and the worker's reconcile tick deletes them.
--
-- paths[i] holds contents[i]. The contents are bytea, not text: a tombstone is a NUL, which
-- Postgres text refuses; nothing in the database reads them. seq: the head of the ended session's
-- log. bytes: the contents' total size, as the edit log counts it against its 8 MiB cap.
-- ended_at: the session's end; a later end of another session of the project replaces the row,
-- an earlier one (an end announced late) never does.
CREATE TABLE IF NOT EXISTS project_files (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES preview_sessions (id) ON DELETE CASCADE,
    seq bigint NOT NULL CHECK (seq >= 0),
    paths text[] NOT NULL,
    contents bytea[] NOT NULL,
    bytes bigint NOT NULL CHECK (bytes >= 0),
    ended_at timestamptz NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(paths) = cardinality(contents)),
    CHECK (array_position(paths, NULL) IS NULL AND array_position(contents, NULL) IS NULL)
);
CREATE INDEX IF NOT EXISTS project_files_ended_at ON project_files (ended_at);

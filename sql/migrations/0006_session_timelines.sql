-- Session timelines (docs/architecture.md, "Session timelines"). `session_events` holds each
-- session's stages, one row per stage, its kind the stage's name: requested, leased
-- (detail.kind: hot | suspended | stopped | ondemand), machine_ready, first_render,
-- first_edit_applied, ended (detail.reason). A stage happens once: the first write wins
-- (INSERT ... ON CONFLICT DO NOTHING on the partial unique index below), so a repeated report
-- (a reloaded preview, a second editor tab, a duplicate job) changes nothing.

-- Rows written before this migration used other names for the same moments.
UPDATE session_events e SET kind = 'leased'
WHERE e.kind = 'created'
  AND NOT EXISTS (SELECT 1 FROM session_events o WHERE o.session_id = e.session_id
                  AND o.kind = 'leased');
UPDATE session_events e SET kind = 'machine_ready'
WHERE e.kind IN ('machine_attached', 'machine_woken')
  AND NOT EXISTS (SELECT 1 FROM session_events o WHERE o.session_id = e.session_id
                  AND o.kind = 'machine_ready');
UPDATE session_events e SET kind = 'ended', detail = e.detail || jsonb_build_object('status', e.kind)
WHERE e.kind = 'failed'
  AND NOT EXISTS (SELECT 1 FROM session_events o WHERE o.session_id = e.session_id
                  AND o.kind = 'ended');
-- Duplicates of a stage (none should exist: each was written once) would block the index.
DELETE FROM session_events e
WHERE e.kind IN ('requested', 'leased', 'machine_ready', 'first_render', 'first_edit_applied',
                 'ended')
  AND EXISTS (SELECT 1 FROM session_events o WHERE o.session_id = e.session_id
              AND o.kind = e.kind AND o.id < e.id);

CREATE UNIQUE INDEX IF NOT EXISTS session_events_one_stage ON session_events (session_id, kind)
    WHERE kind IN ('requested', 'leased', 'machine_ready', 'first_render', 'first_edit_applied',
                   'ended');

-- The stats read sessions by when they were created.
CREATE INDEX IF NOT EXISTS idx_preview_sessions_created_at ON preview_sessions (created_at);

-- Every edit's latency, summarised per session rather than one row per edit: the gateway keeps a
-- fixed-bucket histogram per editor socket in memory (sql/latency.py has the bucket bounds)
-- and adds it here every few seconds and when the socket closes. Histograms add up exactly, so
-- sockets on different instances can flush into one row; percentiles are read from the buckets.
CREATE TABLE IF NOT EXISTS session_edit_latency (
    session_id uuid PRIMARY KEY REFERENCES preview_sessions (id) ON DELETE CASCADE,
    edits bigint NOT NULL DEFAULT 0 CHECK (edits >= 0),
    ack_buckets bigint[] NOT NULL,
    applied_buckets bigint[] NOT NULL,
    applied_count bigint NOT NULL DEFAULT 0 CHECK (applied_count >= 0),
    ack_max_ms double precision NOT NULL DEFAULT 0,
    applied_max_ms double precision NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Plans and per-user quotas: what a user may lease.
CREATE TABLE IF NOT EXISTS plans (
    name text PRIMARY KEY,
    max_concurrent_sessions integer NOT NULL CHECK (max_concurrent_sessions >= 0),
    creations_per_minute integer NOT NULL CHECK (creations_per_minute > 0),
    creation_burst integer NOT NULL CHECK (creation_burst > 0),
    max_session_seconds integer NOT NULL CHECK (max_session_seconds > 0),
    idle_timeout_seconds integer NOT NULL CHECK (idle_timeout_seconds > 0)
);

INSERT INTO plans (name, max_concurrent_sessions, creations_per_minute, creation_burst,
                   max_session_seconds, idle_timeout_seconds)
VALUES ('free', 3, 20, 10, 14400, 900),
       ('pro', 10, 60, 20, 43200, 1800)
ON CONFLICT (name) DO NOTHING;

-- A user without a row here is on the 'free' plan; non-null columns override the plan.
CREATE TABLE IF NOT EXISTS user_quotas (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    plan text NOT NULL DEFAULT 'free' REFERENCES plans (name),
    max_concurrent_sessions integer CHECK (max_concurrent_sessions >= 0),
    creations_per_minute integer CHECK (creations_per_minute > 0),
    creation_burst integer CHECK (creation_burst > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The seed's table, extended. container_id holds the machine id.
CREATE TABLE IF NOT EXISTS preview_sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    container_id text,
    status text NOT NULL DEFAULT 'booting',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_activity timestamptz NOT NULL DEFAULT now(),
    config jsonb NOT NULL DEFAULT '{}'::jsonb
);
ALTER TABLE preview_sessions
    ADD COLUMN IF NOT EXISTS template text NOT NULL DEFAULT 'react-web',
    ADD COLUMN IF NOT EXISTS region text NOT NULL DEFAULT 'local',
    ADD COLUMN IF NOT EXISTS device_type text NOT NULL DEFAULT 'web',
    ADD COLUMN IF NOT EXISTS lease_epoch bigint,
    ADD COLUMN IF NOT EXISTS expires_at timestamptz NOT NULL DEFAULT now() + interval '4 hours',
    ADD COLUMN IF NOT EXISTS idle_timeout_seconds integer NOT NULL DEFAULT 900,
    ADD COLUMN IF NOT EXISTS ended_at timestamptz,
    ADD COLUMN IF NOT EXISTS end_reason text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'preview_sessions_status_check') THEN
        ALTER TABLE preview_sessions ADD CONSTRAINT preview_sessions_status_check
            CHECK (status IN ('booting', 'active', 'ended', 'failed'));
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS idx_preview_sessions_project_id ON preview_sessions (project_id);
CREATE INDEX IF NOT EXISTS idx_preview_sessions_user_id ON preview_sessions (user_id);
-- The reaper and the quota check only look at live sessions.
CREATE INDEX IF NOT EXISTS idx_preview_sessions_live ON preview_sessions (user_id, status)
    WHERE status IN ('booting', 'active');

-- The machine ledger: one row per lease, plus 'fence' rows the reaper writes when it reclaims a
-- lease that never committed. UNIQUE (machine_id, epoch) decides, inside Postgres, whether the
-- API's commit or the reaper's reclaim came first.
CREATE TABLE IF NOT EXISTS machine_leases (
    id bigserial PRIMARY KEY,
    machine_id text NOT NULL,
    epoch bigint NOT NULL,
    session_id uuid REFERENCES preview_sessions (id) ON DELETE CASCADE,
    kind text NOT NULL DEFAULT 'lease' CHECK (kind IN ('lease', 'fence')),
    template text NOT NULL,
    region text NOT NULL,
    leased_at timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    release_reason text,
    UNIQUE (machine_id, epoch)
);
-- At most one active lease per machine, whatever Redis says.
CREATE UNIQUE INDEX IF NOT EXISTS machine_leases_one_active
    ON machine_leases (machine_id) WHERE released_at IS NULL;
CREATE INDEX IF NOT EXISTS machine_leases_session_id_idx ON machine_leases (session_id);

-- The session timeline.
CREATE TABLE IF NOT EXISTS session_events (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES preview_sessions (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    kind text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS session_events_session_id_idx ON session_events (session_id, id);

-- Operator-set pool bounds per (template, region).
CREATE TABLE IF NOT EXISTS pool_targets (
    template text NOT NULL,
    region text NOT NULL,
    min_size integer NOT NULL CHECK (min_size >= 0),
    max_size integer NOT NULL CHECK (max_size >= min_size),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by uuid,
    PRIMARY KEY (template, region)
);

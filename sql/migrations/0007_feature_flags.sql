-- Feature flags for the move from Appetize (docs/rollout.md, "Flags"): which preview system an
-- editor uses. Read by app/rollout (decide_backend), written by the admin API and
-- `preview-orchestrator flags set`, each change recorded in preview_flag_audit.

-- The global switches, one row. percentage: the share of users (by a stable hash of their id,
-- app/rollout/decision.py) on the new system; kill_switch: everyone on Appetize, whatever else
-- is set.
CREATE TABLE IF NOT EXISTS preview_rollout (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    kill_switch boolean NOT NULL DEFAULT false,
    percentage numeric NOT NULL DEFAULT 0 CHECK (percentage >= 0 AND percentage <= 100),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO preview_rollout (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

-- Overrides: a user, a project or a plan always on one system ('new': this one, answered as
-- `fly` or `local`; 'appetize'). A row goes with what it names.
CREATE TABLE IF NOT EXISTS preview_user_flags (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    backend text NOT NULL CHECK (backend IN ('new', 'appetize')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS preview_project_flags (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    backend text NOT NULL CHECK (backend IN ('new', 'appetize')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS preview_plan_flags (
    plan text PRIMARY KEY REFERENCES plans (name) ON DELETE CASCADE,
    backend text NOT NULL CHECK (backend IN ('new', 'appetize')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change of a flag: who (actor_id: the admin's user id, NULL from the CLI; actor: their
-- email, or `cli:{login}@{host}`), when, which flag (`killSwitch`, `percentage`, `user:{id}`,
-- `project:{id}`, `plan:{name}`) and its old and new value (JSON; null: no override).
CREATE TABLE IF NOT EXISTS preview_flag_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid,
    actor text NOT NULL CHECK (length(actor) <= 320),
    flag text NOT NULL,
    old_value jsonb,
    new_value jsonb
);

-- Sessions of the new system that failed for a project and user (recorded by the lease path,
-- sql/fallbacks.py): while one is recent, that editor is answered `appetize` with the
-- reason `fallback`.
CREATE TABLE IF NOT EXISTS preview_fallbacks (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    session_id uuid REFERENCES preview_sessions (id) ON DELETE SET NULL,
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 200),
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS preview_fallbacks_project_user_at
    ON preview_fallbacks (project_id, user_id, at DESC);

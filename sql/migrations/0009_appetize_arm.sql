-- The Appetize arm of the rollout (docs/rollout.md, "Fallback"; docs/embedding.md): sessions the
-- panel showed on Appetize and the stages it reported for them, so the A/B report compares both
-- arms on the same moments (the new system's are in session_events).
--
-- appetize_arm_sessions: one per Appetize embed the panel showed. reason: why this arm
-- (decide_backend's reasons: flag, percentage, kill_switch, fallback, platform, default).
CREATE TABLE IF NOT EXISTS appetize_arm_sessions (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    reason text NOT NULL CHECK (reason IN ('flag', 'percentage', 'kill_switch', 'fallback',
                                           'platform', 'default')),
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz
);
CREATE INDEX IF NOT EXISTS appetize_arm_sessions_created_at
    ON appetize_arm_sessions (created_at);
CREATE INDEX IF NOT EXISTS appetize_arm_sessions_user
    ON appetize_arm_sessions (user_id, created_at DESC);

-- appetize_arm_events: the stages the panel reported, as it measured them (`at`: the panel's
-- clock, bounded by the server to the session's life). A stage other than `error` happens once
-- (the first report wins: a reloaded embed or a retried request changes nothing); errors may
-- repeat. detail: edit_visible {latencyMs: rebuild + upload + reload}, error {message}.
CREATE TABLE IF NOT EXISTS appetize_arm_events (
    id bigserial PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES appetize_arm_sessions (id) ON DELETE CASCADE,
    stage text NOT NULL CHECK (stage IN ('requested', 'embed_loaded', 'first_frame',
                                         'edit_visible', 'error', 'ended')),
    at timestamptz NOT NULL DEFAULT now(),
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(detail) = 'object' AND length(detail::text) <= 2048)
);
CREATE UNIQUE INDEX IF NOT EXISTS appetize_arm_events_one_stage
    ON appetize_arm_events (session_id, stage)
    WHERE stage IN ('requested', 'embed_loaded', 'first_frame', 'ended');
CREATE INDEX IF NOT EXISTS appetize_arm_events_session
    ON appetize_arm_events (session_id, at);

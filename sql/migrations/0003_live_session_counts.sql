-- The concurrent-session quota as one counter row per user: an upsert that only increments
-- below the plan's limit is exact under concurrency (the row lock serialises writers, and the
-- WHERE is re-checked on the latest row), in the same statement that records the session, so a
-- lease commits in one round trip instead of a transaction with an advisory lock.
CREATE TABLE IF NOT EXISTS user_live_sessions (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    live integer NOT NULL DEFAULT 0 CHECK (live >= 0)
);

INSERT INTO user_live_sessions (user_id, live)
SELECT user_id, count(*) FROM preview_sessions
WHERE status IN ('booting', 'active')
GROUP BY user_id
ON CONFLICT (user_id) DO UPDATE SET live = excluded.live;

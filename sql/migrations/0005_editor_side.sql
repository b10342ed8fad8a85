-- The editor's side (docs/embedding.md): a session names a device of the catalogue
-- (app/devices.py; NULL for sessions made before it), and the reaper remembers when it warned a
-- session's editors that it is about to end for inactivity, so it warns once per idle stretch
-- (activity after the warning moves last_activity past it, and the next stretch is warned
-- again).
ALTER TABLE preview_sessions
    ADD COLUMN IF NOT EXISTS device text CHECK (device IS NULL OR length(device) <= 64),
    ADD COLUMN IF NOT EXISTS idle_warned_at timestamptz;

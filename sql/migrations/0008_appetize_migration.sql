-- Moving projects from Appetize (docs/rollout.md, "Migrating projects from Appetize").
--
-- appetize_previews: the editor's own table, one row per project previewed on Appetize, as the
-- editor's database has it. Created only where absent: in a deployment that already has it,
-- this leaves it alone (and a table of another shape must be mapped onto these columns with a
-- view of this name before `appetize migrate` runs).
--   public_key    Appetize's build id (formerly "publicKey"): the embed URL's path. NULL: the
--                 project was never uploaded, so it has no Appetize fallback.
--   platform      'ios' or 'android', as Appetize names them (anything else is reported by the
--                 migration, not refused here: this table records what the editor wrote).
--   device        Appetize's device id (`iphone15pro`, `pixel7`); NULL: Appetize's default.
--   os_version    Appetize's `osVersion` (`17.0`); NULL: Appetize's latest for the device.
--   scale         Appetize's `scale`: a number from 10 to 100, or `auto`; NULL: Appetize's.
--   options       the other embed query parameters the editor sets (orientation, language...).
--   last_build_*  the last build the editor uploaded to Appetize.
CREATE TABLE IF NOT EXISTS appetize_previews (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    public_key text,
    platform text,
    device text,
    os_version text,
    scale text,
    options jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_build_id text,
    last_built_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A project's preview configuration (the seed's "project configurations and user
-- preferences"): what `POST /api/preview/sessions` uses for whatever the request leaves out.
-- NULL columns say nothing: the request's value, else the deployment's default, applies.
CREATE TABLE IF NOT EXISTS project_preview_configs (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    template text CHECK (template IS NULL OR length(template) <= 40),
    device text CHECK (device IS NULL OR length(device) <= 64),
    device_type text CHECK (device_type IS NULL OR device_type IN ('web', 'ios', 'android')),
    options jsonb NOT NULL DEFAULT '{}'::jsonb
        CHECK (jsonb_typeof(options) = 'object' AND length(options::text) <= 4096),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The migration's journal, one row per project it converted: what makes it idempotent (a
-- migrated project whose Appetize settings did not change is skipped), resumable (rows are
-- committed with the configuration they describe, so a killed run continues after the last
-- one) and reversible (rollback removes the configuration it wrote, if nobody changed it).
--   source      the appetize_previews row the configuration was made from (the old value;
--               it stays in place for the Appetize fallback)
--   new_config  the project_preview_configs row the migration wrote (the new value)
CREATE TABLE IF NOT EXISTS appetize_migration_journal (
    project_id uuid PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    state text NOT NULL CHECK (state IN ('migrated', 'rolled_back')),
    source jsonb NOT NULL,
    new_config jsonb NOT NULL,
    migrated_at timestamptz NOT NULL DEFAULT now(),
    rolled_back_at timestamptz,
    CHECK ((state = 'rolled_back') = (rolled_back_at IS NOT NULL))
);

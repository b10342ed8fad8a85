-- Pool tiers (Fly): besides the hot machines (started, dev server up) bounded by min_size and
-- max_size, a pool may keep suspended machines (snapshotted after the dev server came up) and
-- stopped ones, each tier with its own operator bounds. 0/0 keeps a tier empty, which is what
-- every existing pool gets: they stay hot-only until an operator says otherwise.
-- guest_cpus / guest_memory_mb: the machines' size (NULL: the provider's default); changing it
-- rolls through the pool's ready machines.
ALTER TABLE pool_targets
    ADD COLUMN IF NOT EXISTS suspended_min integer NOT NULL DEFAULT 0 CHECK (suspended_min >= 0),
    ADD COLUMN IF NOT EXISTS suspended_max integer NOT NULL DEFAULT 0 CHECK (suspended_max <= 1000),
    ADD COLUMN IF NOT EXISTS stopped_min integer NOT NULL DEFAULT 0 CHECK (stopped_min >= 0),
    ADD COLUMN IF NOT EXISTS stopped_max integer NOT NULL DEFAULT 0 CHECK (stopped_max <= 1000),
    ADD COLUMN IF NOT EXISTS guest_cpus integer CHECK (guest_cpus BETWEEN 1 AND 16),
    ADD COLUMN IF NOT EXISTS guest_memory_mb integer
        CHECK (guest_memory_mb BETWEEN 256 AND 131072);

ALTER TABLE pool_targets
    ADD CONSTRAINT pool_targets_suspended_bounds CHECK (suspended_min <= suspended_max),
    ADD CONSTRAINT pool_targets_stopped_bounds CHECK (stopped_min <= stopped_max),
    ADD CONSTRAINT pool_targets_guest_both CHECK ((guest_cpus IS NULL) = (guest_memory_mb IS NULL));

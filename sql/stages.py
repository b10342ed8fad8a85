"""A session's stages and lease kinds: the names its timeline is made of (sql.timelines)."""

from __future__ import annotations

import enum


class Stage(enum.StrEnum):
    """A session's stages, in the order a session goes through them. Each happens once."""

    REQUESTED = "requested"
    LEASED = "leased"
    MACHINE_READY = "machine_ready"
    FIRST_RENDER = "first_render"
    FIRST_EDIT_APPLIED = "first_edit_applied"
    ENDED = "ended"


class LeaseKind(enum.StrEnum):
    """Where the session's machine came from (the `leased` stage's detail.kind)."""

    HOT = "hot"
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    ONDEMAND = "ondemand"


STAGES = [stage.value for stage in Stage]
# The conflict target of a stage insert: the partial unique index of migration 0006 (its
# predicate must name the same stages).
ONCE = f"(session_id, kind) WHERE kind IN ({', '.join(repr(s) for s in STAGES)})"

"""Which preview system an editor uses, and why: `decide_backend`, the one place it is decided.
Pure: the flags and what is known of the user and project are passed in.

In order, the first rule that applies answers:

1. `kill_switch` on: Appetize, for everyone, whatever else is set.
2. `platform`: the project's saved configuration asks for what this deployment cannot run (a
   template it does not serve, a platform outside RUNNABLE_PLATFORMS): Appetize. Today every
   platform runs here (`ios` and `android` projects render as react-native-web), so this
   applies only to a project configured for a template the deployment left out; issue 13
   (native previews) is where a platform may stop being runnable.
3. `fallback`: the new system failed for this project and user recently: Appetize.
4. `flag`: an override, the project's first, then the user's, then the plan's. The project
   comes first because whether a preview works depends on the project's code: a project known
   to break stays on Appetize even for a user who opted in.
5. `percentage`: the user's bucket (a stable hash of their id) is under the rollout
   percentage: the new system, else Appetize. At 0 % nobody is in, and the answer says
   `default` (the rollout has not started: Appetize is where everyone is).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

# Buckets of 0.01 %: a percentage is compared with 10,000 buckets.
BUCKETS = 10_000
# Part of every user's hash. Changing it reshuffles who is in the rollout: never change it.
ROLLOUT_SALT = "preview-rollout:"
# What this deployment can render: web, and iOS and Android projects through react-native-web.
RUNNABLE_PLATFORMS = frozenset({"web", "ios", "android"})


class Backend(StrEnum):
    FLY = "fly"
    LOCAL = "local"
    APPETIZE = "appetize"


class Reason(StrEnum):
    FLAG = "flag"
    PERCENTAGE = "percentage"
    KILL_SWITCH = "kill_switch"
    FALLBACK = "fallback"
    PLATFORM = "platform"
    DEFAULT = "default"


class Choice(StrEnum):
    """An override's value: the new system (answered as `fly` or `local`) or Appetize."""

    NEW = "new"
    APPETIZE = "appetize"


@dataclass(frozen=True)
class FlagSet:
    """Every flag, as the web processes cache them."""

    kill_switch: bool = False
    percentage: Decimal = Decimal(0)
    projects: Mapping[uuid.UUID, Choice] = field(default_factory=dict)
    users: Mapping[uuid.UUID, Choice] = field(default_factory=dict)
    plans: Mapping[str, Choice] = field(default_factory=dict)


@dataclass(frozen=True)
class Editor:
    """Who asks, about which project, and what is known of them beyond the flags."""

    user_id: uuid.UUID
    project_id: uuid.UUID
    plan: str
    runs_here: bool = True  # platform_runs_here for the project's saved configuration
    recent_fallback: str | None = None  # the reason of a recent fallback of this editor


@dataclass(frozen=True)
class Decision:
    backend: Backend
    reason: Reason
    detail: str  # one sentence for people (the answer's `detail`)


def rollout_bucket(user_id: uuid.UUID) -> int:
    """The user's bucket in [0, BUCKETS): the first 8 bytes of SHA-256(salt + id) mod BUCKETS.
    Fixed for a user forever, so the same users stay in as the percentage changes."""
    digest = hashlib.sha256(f"{ROLLOUT_SALT}{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(user_id: uuid.UUID, percentage: Decimal) -> bool:
    """Whether the user is within `percentage` (0..100): bucket < percentage x 100, so raising
    the percentage only ever adds users, and lowering it only removes them."""
    return bucket_in_rollout(rollout_bucket(user_id), percentage)


def bucket_in_rollout(bucket: int, percentage: Decimal) -> bool:
    return bucket < percentage * (BUCKETS // 100)


def platform_runs_here(
    template: str | None, device_type: str | None, templates: Collection[str]
) -> bool:
    """Whether a project's saved configuration (None: nothing saved) is one this deployment
    can preview: its template is one it serves and its platform one it renders."""
    if template is not None and template not in templates:
        return False
    return device_type is None or device_type in RUNNABLE_PLATFORMS


def decide_backend(flags: FlagSet, editor: Editor, new_backend: Backend) -> Decision:
    """The backend for this editor; `new_backend` is what the new system is called here
    (`fly` with PREVIEW_PROVIDER=fly, `local` otherwise)."""
    if new_backend is Backend.APPETIZE:
        raise ValueError("new_backend names the new system: fly or local")
    if flags.kill_switch:
        return Decision(Backend.APPETIZE, Reason.KILL_SWITCH, "the kill switch is on")
    if not editor.runs_here:
        return Decision(
            Backend.APPETIZE, Reason.PLATFORM, "the project's platform or template is not served"
        )
    if editor.recent_fallback is not None:
        return Decision(
            Backend.APPETIZE, Reason.FALLBACK, f"recent fallback: {editor.recent_fallback}"
        )
    overrides = (
        ("project", flags.projects.get(editor.project_id)),
        ("user", flags.users.get(editor.user_id)),
        ("plan", flags.plans.get(editor.plan)),
    )
    for scope, choice in overrides:
        if choice is not None:
            backend = new_backend if choice is Choice.NEW else Backend.APPETIZE
            return Decision(backend, Reason.FLAG, f"{scope} flag: {choice.value}")
    if flags.percentage <= 0:
        return Decision(Backend.APPETIZE, Reason.DEFAULT, "the rollout has not started (0 %)")
    bucket = rollout_bucket(editor.user_id)
    if bucket_in_rollout(bucket, flags.percentage):
        return Decision(
            new_backend, Reason.PERCENTAGE, f"bucket {bucket} is within {flags.percentage} %"
        )
    return Decision(
        Backend.APPETIZE, Reason.PERCENTAGE, f"bucket {bucket} is outside {flags.percentage} %"
    )

"""The backend decision (app/rollout/decision.py): the percentage rollout's buckets and the
order of the rules, as tables."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

import pytest

from app.rollout.decision import (
    BUCKETS,
    ROLLOUT_SALT,
    Backend,
    Choice,
    Editor,
    FlagSet,
    Reason,
    decide_backend,
    in_rollout,
    platform_runs_here,
    rollout_bucket,
)

# 10,000 user ids, the same on every run (uuid5 of a counter): the assertions below hold or fail
# for good, never by luck of a draw.
IDS = [uuid.uuid5(uuid.NAMESPACE_URL, f"user-{n}") for n in range(10_000)]
USER, PROJECT = IDS[0], uuid.uuid5(uuid.NAMESPACE_URL, "project")


def test_a_users_bucket_is_the_documented_hash_and_never_changes() -> None:
    for user in IDS[:50]:
        digest = hashlib.sha256((ROLLOUT_SALT + str(user)).encode()).digest()
        expected = int.from_bytes(digest[:8], "big") % BUCKETS
        assert rollout_bucket(user) == expected == rollout_bucket(uuid.UUID(str(user).upper()))


@pytest.mark.parametrize("percentage", ["0.5", "1", "5", "10", "25", "33.3", "50", "75", "99"])
def test_the_share_of_users_in_is_within_one_point_of_the_target(percentage: str) -> None:
    target = Decimal(percentage)
    share = Decimal(sum(in_rollout(u, target) for u in IDS) * 100) / len(IDS)
    assert abs(share - target) <= 1, f"{share} % in at a target of {target} %"


def test_the_ends_of_the_range_take_nobody_and_everybody() -> None:
    assert not any(in_rollout(u, Decimal(0)) for u in IDS)
    assert all(in_rollout(u, Decimal(100)) for u in IDS)


def test_raising_the_percentage_only_adds_users() -> None:
    steps = [Decimal(p) for p in ("0", "0.01", "1", "2.5", "10", "10.01", "40", "99.99", "100")]
    previous: set[uuid.UUID] = set()
    for percentage in steps:
        now_in = {u for u in IDS if in_rollout(u, percentage)}
        assert previous <= now_in, f"raising to {percentage} % took users out"
        previous = now_in
    assert len(previous) == len(IDS)


def _editor(**fields: object) -> Editor:
    defaults: dict[str, object] = {"user_id": USER, "project_id": PROJECT, "plan": "free"}
    return Editor(**{**defaults, **fields})  # type: ignore[arg-type]


IN = next(u for u in IDS if in_rollout(u, Decimal(10)))
OUT = next(u for u in IDS if not in_rollout(u, Decimal(10)))

# (case, flags, editor, backend, reason): the first rule that applies answers.
TABLE = [
    ("nothing set: Appetize", FlagSet(), _editor(), Backend.APPETIZE, Reason.DEFAULT),
    (
        "in the percentage",
        FlagSet(percentage=Decimal(10)),
        _editor(user_id=IN),
        Backend.LOCAL,
        Reason.PERCENTAGE,
    ),
    (
        "outside the percentage",
        FlagSet(percentage=Decimal(10)),
        _editor(user_id=OUT),
        Backend.APPETIZE,
        Reason.PERCENTAGE,
    ),
    (
        "a plan flag beats the percentage",
        FlagSet(percentage=Decimal(10), plans={"pro": Choice.NEW}),
        _editor(user_id=OUT, plan="pro"),
        Backend.LOCAL,
        Reason.FLAG,
    ),
    (
        "a user flag beats the plan's",
        FlagSet(plans={"pro": Choice.NEW}, users={USER: Choice.APPETIZE}),
        _editor(plan="pro"),
        Backend.APPETIZE,
        Reason.FLAG,
    ),
    (
        "a project flag beats the user's",
        FlagSet(users={USER: Choice.NEW}, projects={PROJECT: Choice.APPETIZE}),
        _editor(),
        Backend.APPETIZE,
        Reason.FLAG,
    ),
    (
        "a recent fallback beats a flag",
        FlagSet(projects={PROJECT: Choice.NEW}),
        _editor(recent_fallback="start_failed"),
        Backend.APPETIZE,
        Reason.FALLBACK,
    ),
    (
        "a platform not served here beats a fallback",
        FlagSet(projects={PROJECT: Choice.NEW}),
        _editor(runs_here=False, recent_fallback="start_failed"),
        Backend.APPETIZE,
        Reason.PLATFORM,
    ),
    (
        "the kill switch beats everything",
        FlagSet(kill_switch=True, percentage=Decimal(100), projects={PROJECT: Choice.NEW}),
        _editor(user_id=IN),
        Backend.APPETIZE,
        Reason.KILL_SWITCH,
    ),
]


@pytest.mark.parametrize(
    ("case", "flags", "editor", "backend", "reason"), TABLE, ids=[row[0] for row in TABLE]
)
def test_the_first_rule_that_applies_answers(
    case: str, flags: FlagSet, editor: Editor, backend: Backend, reason: Reason
) -> None:
    decision = decide_backend(flags, editor, Backend.LOCAL)
    assert (decision.backend, decision.reason) == (backend, reason)


def test_the_new_system_is_named_as_the_deployment_names_it() -> None:
    flags = FlagSet(users={USER: Choice.NEW})
    assert decide_backend(flags, _editor(), Backend.FLY).backend is Backend.FLY
    with pytest.raises(ValueError, match="fly or local"):
        decide_backend(flags, _editor(), Backend.APPETIZE)


@pytest.mark.parametrize(
    ("template", "device_type", "runs"),
    [
        (None, None, True),
        ("react-web", "web", True),
        ("react-native-web", "ios", True),  # iOS and Android render as react-native-web
        (None, "android", True),
        ("expo-native", "ios", False),  # a template this deployment does not serve
        (None, "watchos", False),
    ],
)
def test_a_project_runs_here_when_its_template_and_platform_are_served(
    template: str | None, device_type: str | None, runs: bool
) -> None:
    served = ("react-web", "react-native-web")
    assert platform_runs_here(template, device_type, served) is runs

"""The Appetize device mapping and the migration's decisions, as tables."""

from __future__ import annotations

import re
import uuid

import pytest

from app.devices import BY_ID
from app.rollout.appetize_devices import APPETIZE_DEVICES, Converted, Unmapped, convert
from app.rollout.appetize_migration import Outcome, plan_migration, plan_rollback
from sql.appetize import Candidate, Migrated


@pytest.mark.parametrize(("appetize_id", "target"), sorted(APPETIZE_DEVICES.items()))
def test_every_mapping_names_a_catalogue_device_and_holds_what_it_claims(
    appetize_id: str, target: tuple[str, str]
) -> None:
    device_id, why = target
    device = BY_ID[device_id]
    claim = re.fullmatch(r"same viewport: (\d+)x(\d+) @([\d.]+)", why)
    if claim is None:
        assert why == "same model"
        assert appetize_id == device.name.lower().replace(" ", "")
    else:
        assert (device.width, device.height, device.pixel_ratio) == (
            int(claim[1]),
            int(claim[2]),
            float(claim[3]),
        )


@pytest.mark.parametrize(
    ("platform", "device", "options", "expected"),
    [
        ("ios", "iphone15pro", {}, Converted("iphone-15", "ios")),
        ("android", "pixel7", {"orientation": "landscape"}, Converted("pixel-8", "android")),
        ("ios", None, {}, Converted(None, "ios")),
        ("ios", "nexus5", {}, Unmapped("unknown Appetize device 'nexus5'")),
        ("ios", "iPhone15Pro", {}, Unmapped("unknown Appetize device 'iPhone15Pro'")),
        (
            "android",
            "iphone15",
            {},
            Unmapped("Appetize device 'iphone15' is ios, the project's platform is android"),
        ),
        (None, "iphone15", {}, Unmapped("unknown Appetize platform (none)")),
        ("web", None, {}, Unmapped("unknown Appetize platform 'web'")),
        (
            "ios",
            None,
            ["not", "an", "object"],
            Unmapped("the Appetize options are not a JSON object"),
        ),
        (
            "ios",
            None,
            {"x": "y" * 5000},
            Unmapped("the Appetize options take 5009 bytes, more than the 4096 allowed"),
        ),
    ],
)
def test_convert(
    platform: str | None, device: str | None, options: object, expected: object
) -> None:
    assert convert(platform, device, options) == expected


def test_an_absurd_device_is_reported_on_one_short_line() -> None:
    result = convert("ios", "x" * 10_000 + "\n'; DROP TABLE projects; --", {})
    assert isinstance(result, Unmapped)
    assert "\n" not in result.reason and len(result.reason) < 120


P = uuid.UUID(int=7)


def _candidate(**overrides: object) -> Candidate:
    fields: dict[str, object] = {
        "project_id": P,
        "project_exists": True,
        "platform": "ios",
        "device": "iphone15pro",
        "options": {},
        "migrated": False,
        "source_unchanged": False,
        "has_config": False,
        "config_unchanged": False,
    }
    fields.update(overrides)
    return Candidate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "outcome", "reason"),
    [
        ({}, Outcome.MIGRATE, ""),
        ({"project_exists": False}, Outcome.UNMAPPED, "no such project"),
        ({"device": "nexus5"}, Outcome.UNMAPPED, "unknown Appetize device 'nexus5'"),
        ({"has_config": True}, Outcome.LEFT_ALONE, "it has a preview configuration of its own"),
        (
            {"migrated": True, "source_unchanged": True, "device": "nexus5"},
            Outcome.UNCHANGED,
            "",
        ),
        (
            {"migrated": True, "has_config": True, "config_unchanged": True},
            Outcome.UPDATE,
            "its Appetize settings changed",
        ),
        (
            {"migrated": True, "has_config": True},
            Outcome.LEFT_ALONE,
            "its migrated configuration was changed since",
        ),
        ({"migrated": True}, Outcome.LEFT_ALONE, "its migrated configuration was removed since"),
    ],
)
def test_plan_migration(overrides: dict[str, object], outcome: Outcome, reason: str) -> None:
    step = plan_migration(_candidate(**overrides))
    assert (step.outcome, step.reason) == (outcome, reason)
    assert (step.converted is not None) == outcome.changes


@pytest.mark.parametrize(
    ("has_config", "unchanged", "outcome"),
    [
        (True, True, Outcome.ROLL_BACK),
        (False, False, Outcome.ROLL_BACK),
        (True, False, Outcome.LEFT_ALONE),
    ],
)
def test_plan_rollback(has_config: bool, unchanged: bool, outcome: Outcome) -> None:
    assert plan_rollback(Migrated(P, has_config, unchanged)).outcome is outcome

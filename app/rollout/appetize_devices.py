"""Appetize's device ids mapped onto the device catalogue (app/devices.py), and the conversion
of one project's Appetize settings into preview configuration. Pure: no I/O.

The mapping is a table, written out: an Appetize device maps to the catalogue's device of the
same model, or to one whose viewport (CSS size and pixel ratio) is the same, so a page lays
out exactly as it did. Anything else is reported as unmapped with its reason, never guessed
from a similar name: a project whose device is not here keeps Appetize until someone adds a
row (or a device to the catalogue). Appetize's ids are those of its "Devices & OS Versions"
list (docs.appetize.io), lower case.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.devices import BY_ID, Platform

# Appetize device id -> (catalogue id, why they are the same device for a preview).
APPETIZE_DEVICES: dict[str, tuple[str, str]] = {
    "iphone15": ("iphone-15", "same model"),
    "iphone15pro": ("iphone-15", "same viewport: 393x852 @3"),
    "iphone15promax": ("iphone-15-pro-max", "same model"),
    "iphone15plus": ("iphone-15-pro-max", "same viewport: 430x932 @3"),
    "iphone14pro": ("iphone-15", "same viewport: 393x852 @3"),
    "iphone14promax": ("iphone-15-pro-max", "same viewport: 430x932 @3"),
    "iphone8": ("iphone-se", "same viewport: 375x667 @2"),
    "iphonese3rdgeneration": ("iphone-se", "same viewport: 375x667 @2"),
    "ipadair4thgeneration": ("ipad-air", "same viewport: 820x1180 @2"),
    "ipadair5thgeneration": ("ipad-air", "same viewport: 820x1180 @2"),
    "pixel8": ("pixel-8", "same model"),
    "pixel7": ("pixel-8", "same viewport: 412x915 @2.625"),
    "galaxys24": ("galaxy-s24", "same model"),
    "galaxytabs9": ("galaxy-tab-s9", "same model"),
}

# What a project's options may weigh: what POST /api/preview/sessions takes (app/schemas.py).
MAX_OPTIONS_BYTES = 4096


@dataclass(frozen=True)
class Converted:
    """The preview configuration: `device` None leaves the platform's default device, as
    Appetize did for a project that named none."""

    device: str | None
    device_type: Platform


@dataclass(frozen=True)
class Unmapped:
    reason: str


def _platform(value: str | None) -> Platform | None:
    if value == "ios":
        return "ios"
    if value == "android":
        return "android"
    return None


def convert(platform: str | None, device: str | None, options: Any) -> Converted | Unmapped:
    """One project's Appetize settings as preview configuration, or why they cannot be."""
    target = _platform(platform)
    if target is None:
        return Unmapped(f"unknown Appetize platform {_shown(platform)}")
    problem = _options_problem(options)
    if problem is not None:
        return Unmapped(problem)
    if device is None:
        return Converted(None, target)
    mapped = APPETIZE_DEVICES.get(device)
    if mapped is None:
        return Unmapped(f"unknown Appetize device {_shown(device)}")
    found = BY_ID[mapped[0]]
    if found.platform != target:
        return Unmapped(
            f"Appetize device {_shown(device)} is {found.platform}, the project's platform "
            f"is {target}"
        )
    return Converted(found.id, target)


def _options_problem(options: Any) -> str | None:
    if not isinstance(options, dict):
        return "the Appetize options are not a JSON object"
    size = len(json.dumps(options))
    if size > MAX_OPTIONS_BYTES:
        return f"the Appetize options take {size} bytes, more than the {MAX_OPTIONS_BYTES} allowed"
    return None


def _shown(value: str | None) -> str:
    """A value from the editor's table, safe to print on one line of a report."""
    if value is None:
        return "(none)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

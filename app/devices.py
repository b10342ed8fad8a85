"""The device catalogue: what a preview can be shown as (GET /api/preview/devices).

Sizes are CSS pixels in portrait (the viewport a page sees on that device) and the device's
pixel ratio, as browsers' device emulation lists them. A session names a device (`device`);
`deviceType` stays the platform, and one given alone picks that platform's default device.
The panel draws the frame (`phone`, `tablet`, `desktop`) and scales the device to fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Platform = Literal["web", "ios", "android"]
Frame = Literal["phone", "tablet", "desktop"]


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    platform: Platform
    width: int
    height: int
    pixel_ratio: float
    frame: Frame

    def as_json(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["pixelRatio"] = fields.pop("pixel_ratio")
        return fields


DEVICES: tuple[Device, ...] = (
    Device("iphone-15", "iPhone 15", "ios", 393, 852, 3.0, "phone"),
    Device("iphone-15-pro-max", "iPhone 15 Pro Max", "ios", 430, 932, 3.0, "phone"),
    Device("iphone-se", "iPhone SE", "ios", 375, 667, 2.0, "phone"),
    Device("ipad-air", "iPad Air", "ios", 820, 1180, 2.0, "tablet"),
    Device("pixel-8", "Pixel 8", "android", 412, 915, 2.625, "phone"),
    Device("galaxy-s24", "Galaxy S24", "android", 360, 780, 3.0, "phone"),
    Device("galaxy-tab-s9", "Galaxy Tab S9", "android", 800, 1280, 2.0, "tablet"),
    Device("laptop", "Laptop", "web", 1280, 800, 1.0, "desktop"),
    Device("desktop", "Desktop", "web", 1440, 900, 1.0, "desktop"),
)

BY_ID = {device.id: device for device in DEVICES}

# A session that names only its platform (the seed's `deviceType`) gets this device.
DEFAULT_DEVICE: dict[Platform, str] = {"web": "laptop", "ios": "iphone-15", "android": "pixel-8"}


class UnknownDevice(ValueError):
    pass


def resolve_device(device: str | None, device_type: Platform | None) -> Device:
    """The session's device from what the request named. Raises UnknownDevice for an id not in
    the catalogue, or one whose platform contradicts an explicit `deviceType`."""
    if device is None:
        return BY_ID[DEFAULT_DEVICE[device_type or "web"]]
    found = BY_ID.get(device)
    if found is None:
        raise UnknownDevice(f"unknown device {device!r}; see GET /api/preview/devices")
    if device_type is not None and device_type != found.platform:
        raise UnknownDevice(f"device {device!r} is {found.platform}, not {device_type}")
    return found


def catalogue() -> list[dict[str, Any]]:
    return [device.as_json() for device in DEVICES]

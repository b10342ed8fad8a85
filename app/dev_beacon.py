"""`dev` tells the operator commands of a second terminal where its stores are.

A running `dev` keeps PREVIEW_DATA_DIR/dev.json: its pid, port, the URLs of the stores it uses
(its embedded Postgres and Valkey, or the ones it was given) and the pool configuration it runs
with. The file is mode 0600 (the URLs open the database) and removed when `dev` exits. A `dev`
killed outright leaves it behind: a reader trusts it only while that pid is alive.

The CLI (`pool ...`, `sessions ...`) reads it when DATABASE_URL or REDIS_URL is unset, so that
in a second terminal beside `dev` they work with no variables at all.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.settings import Settings
from pool.providers.local_process import is_alive

BEACON = "dev.json"

# What a command beside `dev` must see as `dev` does: which pools exist and their defaults.
# Values the command's own environment sets win.
SHARED_SETTINGS = (
    "preview_provider",
    "preview_templates",
    "preview_default_template",
    "preview_default_region",
    "preview_regions",
    "preview_pool_min",
    "preview_pool_max",
)


@dataclass(frozen=True)
class DevBeacon:
    pid: int
    port: int
    database_url: str
    redis_url: str
    settings: dict[str, object] = field(default_factory=dict)

    def overrides(self, settings: Settings) -> dict[str, object]:
        """What a command's settings take from this `dev`: the stores it lacks, and the pool
        configuration its environment does not set."""
        taken: dict[str, object] = {
            name: value
            for name, value in self.settings.items()
            if name in SHARED_SETTINGS and name not in settings.model_fields_set
        }
        if settings.database_url is None:
            taken["database_url"] = self.database_url
        if settings.redis_url is None:
            taken["redis_url"] = self.redis_url
        return taken


@contextlib.contextmanager
def announced(settings: Settings, port: int) -> Iterator[None]:
    """Keep dev.json in the data directory while the block runs (`settings` with the stores
    `dev` uses filled in)."""
    assert settings.database_url and settings.redis_url
    path = settings.preview_data_dir / BEACON
    beacon = DevBeacon(
        pid=os.getpid(),
        port=port,
        database_url=settings.database_url,
        redis_url=settings.redis_url,
        settings={name: getattr(settings, name) for name in SHARED_SETTINGS},
    )
    _write_private(path, json.dumps(asdict(beacon), indent=2))
    try:
        yield
    finally:
        # Only ours: a second `dev` on the same directory may have written its own since.
        if (found := _read(path)) is not None and found.pid == os.getpid():
            path.unlink(missing_ok=True)


def find_running_dev(data_dir: Path) -> DevBeacon | None:
    """The `dev` running on `data_dir`, or None (no file, a malformed one, or its `dev` has
    died)."""
    beacon = _read(data_dir / BEACON)
    return beacon if beacon is not None and is_alive(beacon.pid) else None


def _read(path: Path) -> DevBeacon | None:
    try:
        raw = json.loads(path.read_text())
        return DevBeacon(
            pid=int(raw["pid"]),
            port=int(raw["port"]),
            database_url=str(raw["database_url"]),
            redis_url=str(raw["redis_url"]),
            settings=dict(raw.get("settings") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only from the first byte on, replacing
    the file at once (a reader never sees half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover partial file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)

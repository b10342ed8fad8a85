"""A project's preview configuration (migration 0008, `project_preview_configs`): the template,
device and options a session of the project gets when its request does not name them.

The lease path reads it in its one query (sql.quotas.load_lease_context); the Appetize
migration (app/rollout/appetize_migration.py, sql/appetize.py) is what writes it today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PreviewConfig:
    """NULL columns say nothing: the request's value, else the deployment's default."""

    template: str | None = None
    device: str | None = None
    device_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

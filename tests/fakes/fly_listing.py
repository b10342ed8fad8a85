"""GET /apps/{app}/machines in the fake: filters, eventual consistency, cursor pagination.

Filters are `metadata.<key>=value` (exact, ANDed), `region`, `state` (comma list) and
`include_deleted`. A machine is listed only from its `visible_at` on (lists lag behind
creates, notes section 4). Pagination follows the spec: `limit` (1-1000) enables it, the next
page's position comes back in `fly-next-cursor` and is sent as `cursor` (which needs `limit`),
a cursor expires 30 minutes after the first page, and the limit is advisory: with
`short_pages` every other page comes back empty although more machines remain.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping

from tests.fakes.fly_state import FakeMachine, Refused

CURSOR_LIFETIME = 30 * 60


def list_page(
    machines: Iterable[FakeMachine], query: Mapping[str, str], now: float, short_pages: bool
) -> tuple[list[FakeMachine], dict[str, str]]:
    """The machines of one page and the headers to send with it."""
    found = sorted((m for m in machines if listed(m, query, now)), key=lambda m: m.id)
    limit = as_int(query.get("limit"))
    cursor = query.get("cursor")
    if cursor is not None and limit is None:
        raise Refused(400, "cursor requires limit")
    if limit is None:
        return found, {}
    if not 1 <= limit <= 1000:
        raise Refused(400, "limit must be between 1 and 1000")
    after, issued, page = _read_cursor(cursor) if cursor else ("", now, 0)
    if now - issued > CURSOR_LIFETIME:
        raise Refused(400, "cursor expired")
    rest = [m for m in found if m.id > after]
    chunk = [] if short_pages and page % 2 == 1 else rest[:limit]
    if len(rest) == len(chunk):
        return chunk, {}
    position = chunk[-1].id if chunk else after
    return chunk, {"fly-next-cursor": _make_cursor(position, issued, page + 1)}


def listed(machine: FakeMachine, query: Mapping[str, str], now: float) -> bool:
    if now < machine.visible_at:
        return False
    if machine.state == "destroyed" and query.get("include_deleted") != "true":
        return False
    if "region" in query and machine.region != query["region"]:
        return False
    if "state" in query and machine.state not in query["state"].split(","):
        return False
    metadata = machine.config.get("metadata") or {}
    return all(
        metadata.get(key.removeprefix("metadata.")) == value
        for key, value in query.items()
        if key.startswith("metadata.")
    )


def as_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _make_cursor(after: str, issued: float, page: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([after, issued, page]).encode()).decode()


def _read_cursor(cursor: str) -> tuple[str, float, int]:
    try:
        after, issued, page = json.loads(base64.urlsafe_b64decode(cursor))
    except ValueError as exc:
        raise Refused(400, "invalid cursor") from exc
    return str(after), float(issued), int(page)

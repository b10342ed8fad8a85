"""`POST /__preview/render` on a preview origin: the page reports its first render.

The bridge the preview plugin injects into every page (sandbox/templates/preview-plugin.js)
posts here once, in the first animation frame after the app's root has children. The preview
router (app.preview_proxy) has already checked the session's cookie for this very origin, so
the session is the one the host names and no other; this adds what a report needs:

- POST only (405), from the preview's own pages (a cross-site page holding the cookie: 403);
- a body of at most MAX_BODY bytes (413), empty or a JSON object with an optional
  `sinceNavigationMs` (the browser's own time from navigation to that frame, 0 ≤ n ≤ 1 day):
  anything else is 400 and records nothing;
- the first report wins (sql.timelines.record_stage): a reload, a second tab or a replay
  answers 204 and changes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from starlette.types import Receive, Scope, Send

from app.preview_request import header, same_origin
from app.resources import Resources
from sql import timelines
from sql.stages import Stage

log = logging.getLogger(__name__)

RENDER_PATH = "/__preview/render"
MAX_BODY = 1024
_MAX_SINCE_NAVIGATION_MS = 86_400_000


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def record_first_render(
    res: Resources, session_id: uuid.UUID, scope: Scope, receive: Receive, send: Send
) -> None:
    try:
        if scope["method"] != "POST":
            raise _Refused(405, f"{RENDER_PATH} takes POST")
        if not same_origin(scope):
            raise _Refused(403, "the report's Origin is not this preview's")
        detail = _detail(await _read_body(scope, receive))
    except _Refused as refused:
        await _answer(send, refused.status, refused.message, allow=refused.status == 405)
        return
    async with res.db.connection() as conn:
        first = await timelines.record_stage(conn, session_id, Stage.FIRST_RENDER, detail)
        # Once per session: its time since `requested`, for preview_first_render_seconds.
        timeline = await timelines.read_timeline(conn, session_id) if first else None
    if first:
        log.info("session %s: first render reported", session_id)
    if timeline is not None:
        _measure_first_render(res, timeline)
    await _answer(send, 204, "")


def _measure_first_render(res: Resources, timeline: timelines.Timeline) -> None:
    for stage in timeline.stages:
        if stage.stage is Stage.FIRST_RENDER:
            res.metrics.first_render(timeline.template, stage.since_requested_ms / 1000)
            return


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise _Refused(413, f"the report is limited to {MAX_BODY} bytes")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Refused(400, "the body did not arrive")
        body.extend(message.get("body", b""))
        if len(body) > MAX_BODY:
            raise _Refused(413, f"the report is limited to {MAX_BODY} bytes")
        if not message.get("more_body"):
            return bytes(body)


def _detail(body: bytes) -> dict[str, Any]:
    """What the report says, checked: {} or {"sinceNavigationMs": n}."""
    if not body.strip():
        return {}
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Refused(400, "the body is not valid JSON") from None
    if not isinstance(payload, dict) or set(payload) - {"sinceNavigationMs"}:
        raise _Refused(400, "the body is an object with at most `sinceNavigationMs`")
    if "sinceNavigationMs" not in payload:
        return {}
    since = payload["sinceNavigationMs"]
    if (
        isinstance(since, bool)
        or not isinstance(since, int | float)
        or not math.isfinite(since)
        or not 0 <= since <= _MAX_SINCE_NAVIGATION_MS
    ):
        raise _Refused(400, "sinceNavigationMs is a number of milliseconds, 0 to one day")
    return {"sinceNavigationMs": round(float(since), 1)}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _answer(send: Send, status: int, message: str, *, allow: bool = False) -> None:
    body = f"{status}: {message}\n".encode() if message else b""
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

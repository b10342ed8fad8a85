"""A whole session's timeline, honestly: a real local machine, Chromium rendering the preview
(its bridge reports the first render), an edit through the editor socket that the agent
applies, and the end. Every stage is there, in order, and the edit's latencies are summarised."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageLog, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _timeline(stack: Stack, session: Session) -> dict[str, Any]:
    answer = stack.http.get(
        f"{stack.base_url}/api/admin/sessions/{session.id}/timeline", headers=stack.headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _wait_for(stack: Stack, session: Session, ready: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        timeline = _timeline(stack, session)
        if ready(timeline):
            return timeline
        assert time.monotonic() < deadline, f"timeline never got there: {timeline}"
        time.sleep(0.1)


def _stages(timeline: dict[str, Any]) -> list[str]:
    return [s["stage"] for s in timeline["stages"]]


def test_a_session_timeline_has_every_stage_in_order(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    response = page.goto(session.preview_url)
    assert response is not None and response.ok
    page.wait_for_function("document.getElementById('root')?.childElementCount > 0")
    rendered = _wait_for(stack, session, lambda t: "first_render" in _stages(t))
    assert _stages(rendered) == ["requested", "leased", "machine_ready", "first_render"]
    # A reload reports again; the first report stays.
    first_render = rendered["stages"][3]
    page.reload()
    page.wait_for_function("document.getElementById('root')?.childElementCount > 0")

    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        seq = editor.write("src/App.jsx", app_source("Timed edit"))
        editor.wait("ack", lambda f: f["seq"] == seq)
        editor.wait_applied(seq)
        wait_text(page, "#title", "Timed edit")
    # The editor socket's close adds its latencies to the session's summary.
    _wait_for(stack, session, lambda t: t["edits"]["count"] >= 1)
    stack.end(session)

    timeline = _timeline(stack, session)
    assert _stages(timeline) == [
        "requested",
        "leased",
        "machine_ready",
        "first_render",
        "first_edit_applied",
        "ended",
    ]
    stages = timeline["stages"]
    assert stages[3] == first_render
    elapsed = [s["sinceRequestedMs"] for s in stages]
    assert elapsed[0] == 0 and elapsed == sorted(elapsed)
    times = [datetime.fromisoformat(s["at"]) for s in stages]
    assert times == sorted(times)
    assert timeline["leaseKind"] == "hot" and stages[1]["detail"]["kind"] == "hot"
    assert stages[2]["detail"]["machine"] == session.machine_id
    # The browser's own measure of navigation to painted frame.
    assert 0 < stages[3]["detail"]["sinceNavigationMs"] < 60_000
    assert stages[4]["detail"] == {"machine": session.machine_id, "seq": seq}
    assert stages[5]["detail"] == {"reason": "deleted", "status": "ended"}
    edits = timeline["edits"]
    assert edits["count"] == 1
    assert 0 < edits["ackMaxMs"] <= edits["appliedMaxMs"] < 30_000
    # One edit: every percentile is that edit.
    assert edits["ackP50Ms"] == edits["ackP95Ms"] == edits["ackMaxMs"]
    assert edits["appliedP50Ms"] == edits["appliedP95Ms"] == edits["appliedMaxMs"]
    # The owner reads the same story.
    own = stack.http.get(
        f"{stack.base_url}/api/preview/sessions/{session.id}/timeline", headers=stack.headers
    )
    assert own.status_code == 200 and own.json() == timeline

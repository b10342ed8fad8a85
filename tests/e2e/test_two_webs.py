"""Two web processes on the same stores: the editor on a second `preview-orchestrator web`,
the machine's agent connected to `dev`. Edits cross between them through Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.browser import PageLog, assert_hmr_through_proxy, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, app_source, web_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_an_editor_on_another_web_process_drives_the_preview(
    stack: Stack,
    session: Session,
    page: Page,
    page_log: PageLog,
    context: BrowserContext,
    tmp_path: Path,
) -> None:
    with web_process(stack, tmp_path) as other:
        with Editor(session.editor_url(other)) as editor:
            welcome = editor.hello()
            assert welcome["sessionId"] == session.id
            seq = editor.write("src/App.jsx", app_source("From the other web process"))
            editor.wait("ack", lambda f: f["seq"] == seq)
            # `applied` comes from the agent, whose socket is on `dev`.
            editor.wait_applied(seq)
            open_preview(page, page_log, session, "From the other web process")

            # The same preview through the second process's own preview origin.
            port = other.rsplit(":", 1)[1]
            second = context.new_page()
            second_url = session.preview_url.replace(f":{stack.port}/", f":{port}/")
            assert second_url != session.preview_url
            response = second.goto(second_url)
            assert response is not None and response.ok
            wait_text(second, "#title", "From the other web process")

            seq = editor.write("src/App.jsx", app_source("Second edit, still elsewhere"))
            wait_text(page, "#title", "Second edit, still elsewhere")
            wait_text(second, "#title", "Second edit, still elsewhere")
            editor.wait_applied(seq)
    assert_hmr_through_proxy(page_log, session)

    # The agent never talked to the second process: its socket stayed on `dev`.
    logs = "\n".join(p.read_text() for p in tmp_path.glob("web-*.log"))
    assert "/api/preview/sessions/" in logs
    assert "/api/sandbox/ws" not in logs

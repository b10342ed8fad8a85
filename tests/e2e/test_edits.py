"""Edits from the editor socket to the DOM in Chromium: first load, hot updates through the
orchestrator's proxy of Vite's HMR socket, React Fast Refresh keeping state, build errors."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageLog, assert_hmr_through_proxy, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OVERLAY = "document.querySelector('vite-error-overlay')"


def test_a_patch_shows_in_the_browser_and_the_next_one_hot_updates(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    with Editor(session.editor_url(stack.base_url)) as editor:
        welcome = editor.hello()
        assert (welcome["sessionId"], welcome["head"]) == (session.id, 0)
        seq = editor.write("src/App.jsx", app_source("First edit"))
        assert editor.wait("ack", lambda f: f["seq"] == seq)
        editor.wait_applied(seq)

        open_preview(page, page_log, session, "First edit")
        page.evaluate("window.__e2eMarker = 'same document'")
        navigations = page_log.navigations

        seq = editor.write("src/App.jsx", app_source("Second edit"))
        wait_text(page, "#title", "Second edit")
        editor.wait_applied(seq)

    # No reload: the same document (and its globals) took the update over HMR.
    assert page.evaluate("window.__e2eMarker") == "same document"
    assert page_log.navigations == navigations
    assert any("[vite] hot updated: /src/App.jsx" in line for line in page_log.console)
    assert_hmr_through_proxy(page_log, session)
    assert (stack.workspace(session.machine_id) / "src/App.jsx").read_text() == app_source(
        "Second edit"
    )


def test_fast_refresh_keeps_the_counter_across_an_edit_of_its_component(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.jsx", app_source("Counter v1")))
        open_preview(page, page_log, session, "Counter v1")

        page.click("#counter")
        page.click("#counter")
        wait_text(page, "#counter", "count is 2")
        navigations = page_log.navigations

        seq = editor.write("src/App.jsx", app_source("Counter v2"))
        wait_text(page, "#title", "Counter v2")
        editor.wait_applied(seq)

    assert page.text_content("#counter") == "count is 2"
    assert page_log.navigations == navigations
    assert_hmr_through_proxy(page_log, session)


def test_a_syntax_error_reports_build_error_and_the_next_edit_recovers(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.jsx", app_source("Before the error")))
        open_preview(page, page_log, session, "Before the error")

        mark = editor.mark()
        broken = app_source("Broken").replace("<h1 id=", "<h1 <id=")
        seq = editor.write("src/App.jsx", broken)
        error = editor.wait("buildError", after=mark)
        assert error["file"] == "src/App.jsx"
        assert error["line"] == 7  # the <h1 line of APP
        assert error["column"] > 0 and error["message"]
        editor.wait("status", lambda f: f["state"] == "error", after=mark)
        editor.wait_applied(seq, after=mark)
        # The browser shows Vite's error overlay over the last good render.
        page.wait_for_function(f"{OVERLAY} !== null", timeout=15_000)
        assert page.text_content("#title") == "Before the error"

        mark = editor.mark()
        seq = editor.write("src/App.jsx", app_source("Recovered"))
        wait_text(page, "#title", "Recovered")
        editor.wait_applied(seq, after=mark)
        editor.wait("status", lambda f: f["state"] == "ready", after=mark)
        page.wait_for_function(f"{OVERLAY} === null", timeout=15_000)
        # A new editor tab learns the state from `welcome`.
        with Editor(session.editor_url(stack.base_url)) as other:
            welcome = other.hello(last_seq=seq)
            assert (welcome["state"], welcome["applied"], welcome["head"]) == ("ready", seq, seq)


def test_no_credential_used_by_a_session_reaches_the_log(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    # A whole session: the editor socket (token in its URL, which uvicorn logs), the preview's
    # token-to-cookie redirect, the API with the user's bearer token.
    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.jsx", app_source("Quiet logs")))
        open_preview(page, page_log, session, "Quiet logs")
    refreshed = stack.http.post(
        f"{stack.base_url}/api/preview/sessions/{session.id}/token", headers=stack.headers
    )
    assert refreshed.status_code == 200, refreshed.text
    log = stack.log_path.read_text(errors="replace")
    assert f"/api/preview/sessions/{session.id}/ws" in log, "the socket's line was not logged"
    for name, secret in {
        "session token": session.token,
        "refreshed token": refreshed.json()["token"],
        "user's access token": stack.admin_token,
        "file's content": "Quiet logs",
    }.items():
        assert secret not in log, f"the {name} is in the log"
    # Lines about this session say which session, machine and request they concern (dev's
    # lines for people end with "[request=… session=… machine=…]").
    lines = log.splitlines()
    assert any(f"session={session.id}" in line for line in lines), "no line names the session"
    assert any(f"machine={session.machine_id}" in line for line in lines), "none names its machine"
    assert any("request=" in line and f"session={session.id}" in line for line in lines), (
        "no line of a request about the session names the request"
    )

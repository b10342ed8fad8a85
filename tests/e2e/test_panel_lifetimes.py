"""Lifetimes, on a stack of their own with everything short: 12 s session tokens, a 20 s idle
timeout warned 10 s ahead, a reaper every second.

- The demo keeps hot-reloading past its first token's expiry, and the app keeps its state:
  the panel refreshes the token and hands it to the preview origin without a reload.
- A hidden page stays silent: its session hears `idleWarning`, then `ended`.
- After DELETE, the socket hears `ended`, and a later patch is refused, never acked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Page
from websockets.exceptions import ConnectionClosed

from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, running_stack
from tests.e2e.test_panel import events, preview, record_events, wait_state
from tests.e2e.test_panel import open_demo as open_demo_project
from tests.redis_claim import redis_url

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_URL = redis_url("E2E_LIFETIMES_REDIS_URL", "e2e-lifetimes")
TOKEN_SECONDS = 12
IDLE_SECONDS = 20


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("lifetimes"),
        redis_url=REDIS_URL,
        pool_min=1,
        pool_max=2,
        extra_env={
            "PREVIEW_SESSION_TOKEN_TTL_SECONDS": str(TOKEN_SECONDS),
            "PREVIEW_IDLE_WARNING_SECONDS": "10",
            "PREVIEW_REAP_INTERVAL_SECONDS": "1",
            "PREVIEW_ACTIVITY_FLUSH_SECONDS": "1",
        },
    ) as stack:
        # The demo user's plan ('pro' in the test stacks) idles out after 20 s here.
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE plans SET idle_timeout_seconds = %s WHERE name = 'pro'", (IDLE_SECONDS,)
            )
        yield stack


def open_demo(page: Page, stack: Stack) -> dict[str, Any]:
    # Once the demo's uploaded project is in the preview: clicks made before that would be
    # lost when the upload hot-updates the app (it re-sends Counter.jsx too).
    open_demo_project(page, stack)
    record_events(page, "#panel", "preview-token", "preview-idle-warning", "preview-ended")
    session: dict[str, Any] = page.evaluate("document.querySelector('#panel').session")
    return session


def set_title(page: Page, title: str) -> None:
    page.evaluate(
        """(title) => {
            const app = window.demo.files['src/App.jsx'] ?? window.demo.files.get('src/App.jsx');
            const old = app.match(/<h1 id="title">([^<]*)<\\/h1>/)[1];
            window.demo.setFile('src/App.jsx', app.replace(old, title));
        }""",
        title,
    )


def wait_title(page: Page, title: str, timeout: float = 30) -> None:
    locator = preview(page, "#panel").locator("#title")
    deadline = time.monotonic() + timeout
    while locator.inner_text() != title:
        assert time.monotonic() < deadline, locator.inner_text()
        page.wait_for_timeout(50)


def test_the_preview_outlives_its_first_token_with_its_state(
    short_stack: Stack, page: Page
) -> None:
    session = open_demo(page, short_stack)
    first_expiry = time.time() + TOKEN_SECONDS
    counter = preview(page, "#panel").locator("#counter")
    counter.dispatch_event("click")
    counter.dispatch_event("click")
    assert counter.inner_text() == "count is 2"
    # A mark in the page's window: it survives only if the page is never reloaded.
    handle = page.locator("#panel .screen iframe").first.element_handle()
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    frame.evaluate("window.__notReloaded = true")

    # Well past the first token: the edit still reaches the page through hot reload (its
    # module fetch needs a valid cookie), and the counter keeps its state.
    while time.time() < first_expiry + 3:
        page.wait_for_timeout(250)
    assert events(page, "preview-token"), "the panel never refreshed its token"
    set_title(page, "After the first token")
    wait_title(page, "After the first token")
    assert counter.inner_text() == "count is 2"
    assert frame.evaluate("window.__notReloaded === true")
    short_stack.http.delete(
        f"{short_stack.base_url}/api/preview/sessions/{session['id']}",
        headers=short_stack.headers,
    )


def test_a_hidden_page_is_warned_then_ended(short_stack: Stack, page: Page) -> None:
    open_demo(page, short_stack)
    # The page goes to the background: the client stops pinging.
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});
            Object.defineProperty(document, 'hidden', {get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    deadline = time.monotonic() + IDLE_SECONDS + 30
    while not events(page, "preview-ended"):
        assert time.monotonic() < deadline, events(page)
        page.wait_for_timeout(250)
    warned, ended = events(page, "preview-idle-warning"), events(page, "preview-ended")
    assert warned, "no idleWarning before the end"
    assert warned[0]["at"] < ended[0]["at"]
    assert 0 < warned[0]["detail"]["secondsLeft"] <= 10
    assert ended[0]["detail"]["reason"] == "idle_timeout"
    wait_state(page, "ended", "#panel")


def test_delete_ends_the_socket_and_a_later_patch_is_refused(
    short_stack: Stack, page: Page
) -> None:
    session = open_demo(page, short_stack)
    token = page.evaluate("document.querySelector('#panel').connection.token")
    probe = Session(session["id"], token, session["previewUrl"], "", session)
    with Editor(probe.editor_url(short_stack.base_url)) as editor:
        head = editor.hello()["head"]
        answer = short_stack.http.delete(
            f"{short_stack.base_url}/api/preview/sessions/{session['id']}",
            headers=short_stack.headers,
        )
        assert answer.status_code == 204
        ended = editor.wait("ended")
        assert ended["reason"] == "deleted"
        assert editor.wait_closed() == 4000
    wait_state(page, "ended", "#panel")
    assert events(page, "preview-ended")[0]["detail"]["reason"] == "deleted"

    # A socket opened now is told the same, and its patch is never acked.
    with Editor(probe.editor_url(short_stack.base_url)) as late:
        # The server may have closed it already: then the patch cannot even be sent.
        with contextlib.suppress(ConnectionClosed):
            late.send("patch", seq=head + 1, changes=[{"path": "a.js", "content": "x"}])
        assert late.wait_closed() == 4000
        assert [f["type"] for f in late.frames] == ["ended"]

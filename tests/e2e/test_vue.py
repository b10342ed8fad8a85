"""The vue-web template in Chromium: an edit of App.vue reaches the DOM over Vue's HMR with the
component's state kept, and SFC errors come back as `buildError` naming the file and line.

A stack of its own (`vue-web` is not one of the package stack's templates), on a Redis database
claimed for it: the package stack flushes its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageLog, assert_hmr_through_proxy, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, running_stack
from tests.e2e.vue_app import (
    SCRIPT_LINE,
    TITLE_LINE,
    broken_script,
    broken_template,
    vue_app_source,
)
from tests.redis_claim import redis_url

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_URL = redis_url("E2E_VUE_REDIS_URL", "e2e-vue")
OVERLAY = "document.querySelector('vite-error-overlay')"


@pytest.fixture(scope="module")
def vue_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e-vue"),
        redis_url=REDIS_URL,
        templates="vue-web",
        pool_min=1,
        pool_max=2,
    ) as running:
        yield running


@pytest.fixture
def vue_session(vue_stack: Stack) -> Iterator[Session]:
    vue_stack.wait_ready_machines(1)
    leased = vue_stack.lease()
    try:
        yield leased
    finally:
        vue_stack.end(leased)


def test_an_edit_of_app_vue_hot_updates_the_dom_and_keeps_the_counter(
    vue_stack: Stack, vue_session: Session, page: Page, page_log: PageLog
) -> None:
    assert vue_session.raw["template"] == "vue-web"
    with Editor(vue_session.editor_url(vue_stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.vue", vue_app_source("Vue v1")))
        open_preview(page, page_log, vue_session, "Vue v1")
        page.click("#counter")
        page.click("#counter")
        wait_text(page, "#counter", "count is 2")
        page.evaluate("window.__e2eMarker = 'same document'")
        navigations = page_log.navigations

        mark = editor.mark()
        seq = editor.write("src/App.vue", vue_app_source("Vue v2"))
        wait_text(page, "#title", "Vue v2")
        editor.wait_applied(seq, after=mark)
        assert not editor.of("buildError", after=mark)

    # Vue's HMR re-rendered the component in the same document: its state survived.
    assert page.text_content("#counter") == "count is 2"
    assert page.evaluate("window.__e2eMarker") == "same document"
    assert page_log.navigations == navigations
    assert any("[vite] hot updated: /src/App.vue" in line for line in page_log.console)
    assert_hmr_through_proxy(page_log, vue_session)
    workspace = vue_stack.workspace(vue_session.machine_id)
    assert (workspace / "src/App.vue").read_text() == vue_app_source("Vue v2")


def test_sfc_errors_report_file_and_line_and_the_next_edit_recovers(
    vue_stack: Stack, vue_session: Session, page: Page, page_log: PageLog
) -> None:
    with Editor(vue_session.editor_url(vue_stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.vue", vue_app_source("Before the error")))
        open_preview(page, page_log, vue_session, "Before the error")

        # The template compiler's error: a heading closed with the wrong tag.
        mark = editor.mark()
        source, column = broken_template("Broken")
        seq = editor.write("src/App.vue", source)
        error = editor.wait("buildError", after=mark)
        assert (error["file"], error["line"], error["column"]) == (
            "src/App.vue",
            TITLE_LINE,
            column,
        )
        editor.wait("status", lambda f: f["state"] == "error", after=mark)
        editor.wait_applied(seq, after=mark)
        page.wait_for_function(f"{OVERLAY} !== null", timeout=15_000)
        assert page.text_content("#title") == "Before the error"

        # Babel's, for <script setup>.
        mark = editor.mark()
        source, column = broken_script("Broken script")
        seq = editor.write("src/App.vue", source)
        error = editor.wait("buildError", after=mark)
        assert (error["file"], error["line"], error["column"]) == (
            "src/App.vue",
            SCRIPT_LINE,
            column,
        )
        editor.wait_applied(seq, after=mark)

        mark = editor.mark()
        seq = editor.write("src/App.vue", vue_app_source("Recovered"))
        wait_text(page, "#title", "Recovered")
        editor.wait_applied(seq, after=mark)
        editor.wait("status", lambda f: f["state"] == "ready", after=mark)
        page.wait_for_function(f"{OVERLAY} === null", timeout=15_000)
        # Every confirmation came from Vite, none from the agent's 2 s fallback.
        logs = [f["message"] for f in editor.of("log") if "did not confirm" in f["message"]]
        assert not logs, logs

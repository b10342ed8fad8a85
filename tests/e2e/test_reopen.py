"""Reopening a project in Chromium: a session edits, ends; the next session of the project asks
for the project's last files (`"restore": true`) and sends none, and its preview shows the last
edit from its first load, then hot-updates with the next edit as any session does."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.e2e.browser import PageLog, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_new_session_of_the_project_shows_the_last_edit_without_sending_files(
    stack: Stack, page: Page, page_log: PageLog
) -> None:
    stack.wait_ready_machines(1)
    first = stack.lease()
    try:
        with Editor(first.editor_url(stack.base_url)) as editor:
            editor.hello()
            editor.wait_applied(editor.write("src/scratch.txt", "gone by the end"))
            editor.wait_applied(editor.write("src/App.jsx", app_source("Kept across sessions")))
            # A deletion is part of the project's state too.
            editor.wait_applied(editor.patch([{"path": "src/scratch.txt", "delete": True}]))
    finally:
        stack.end(first)

    stack.wait_ready_machines(1)
    reopened = stack.lease(restore=True)
    try:
        assert reopened.machine_id != first.machine_id  # a fresh machine, reset or new
        restored = reopened.raw["restored"]
        assert restored["fromSession"] == first.id
        assert restored["hydrated"] is True  # applied before the answer (201)
        workspace = stack.workspace(reopened.machine_id)
        assert (workspace / "src/App.jsx").read_text() == app_source("Kept across sessions")
        assert not (workspace / "src/scratch.txt").exists()

        # The first load already shows the last edit: no file was sent in this session.
        open_preview(page, page_log, reopened, "Kept across sessions")

        with Editor(reopened.editor_url(stack.base_url)) as editor:
            welcome = editor.hello()
            assert (welcome["head"], welcome["applied"]) == (restored["seq"], restored["seq"])
            snapshot = editor.wait("snapshot")
            assert snapshot["files"]["src/App.jsx"] == app_source("Kept across sessions")
            assert snapshot["deleted"] == ["src/scratch.txt"]
            navigations = page_log.navigations
            seq = editor.write("src/App.jsx", app_source("Edited after reopening"))
            assert seq == restored["seq"] + 1
            wait_text(page, "#title", "Edited after reopening")
            editor.wait_applied(seq)
        assert page_log.navigations == navigations  # a hot update, not a reload
    finally:
        stack.end(reopened)

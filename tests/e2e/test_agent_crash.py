"""The sandbox agent SIGKILLed in the middle of a stream of patches and restarted the way the
machine's restart policy would: it reconnects, resumes from its persisted seq, and the preview
ends on the last patch, with none lost and none applied twice."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.browser import PageLog, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PATCHES = 100
KILL_AFTER_APPLIED = 25
SEND_GAP = 0.03  # faster than the agent applies edits of one file, so patches queue up


def gone(pid: int) -> bool:
    """Exited (a zombie its parent has not reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
    except OSError:
        return True
    return state == ["Z"]


def changes(n: int) -> list[dict[str, str]]:
    # The component (what the browser shows) and one file per patch (what a lost patch would
    # leave missing).
    return [
        {"path": "src/App.jsx", "content": app_source(f"Patch {n}")},
        {"path": f"src/notes/{n}.txt", "content": f"note {n}\n"},
    ]


def test_a_killed_agent_resumes_and_the_preview_ends_on_the_last_patch(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    machine = session.machine_id
    workspace = stack.workspace(machine)
    first_pid = int(stack.run_provider("get", machine)["pid"])

    with Editor(session.editor_url(stack.base_url)) as editor:
        welcome = editor.hello()
        response = page.goto(session.preview_url)
        assert response is not None and response.ok
        page.wait_for_selector("#title")

        def send_all() -> None:
            for n in range(1, PATCHES + 1):
                assert editor.patch(changes(n)) == n
                time.sleep(SEND_GAP)

        sender = threading.Thread(target=send_all, name="patch-sender")
        sender.start()
        try:
            editor.wait_applied(KILL_AFTER_APPLIED, timeout=30)
            os.kill(first_pid, signal.SIGKILL)
            applied_at_kill = max(editor.applied_seqs())
            deadline = time.monotonic() + 10
            while not gone(first_pid):
                assert time.monotonic() < deadline, "the agent did not die"
                time.sleep(0.02)
            # What a restart policy does with a machine whose process died.
            second_pid = int(stack.run_provider("start", machine)["pid"])
        finally:
            sender.join()
        record = (workspace.parent / "machine.json").read_text()
        assert second_pid != first_pid, f"not restarted: {record}"
        assert applied_at_kill < PATCHES, "the agent was not killed mid-stream"

        editor.wait_applied(PATCHES, timeout=60)
        # Vite went down with the agent. Its client in the page normally notices the server is
        # back and reloads by itself; after a cold restart on a loaded host that can take longer
        # than we wait, and then a reload (what the user would do) must show the last patch.
        try:
            wait_text(page, "#title", f"Patch {PATCHES}", timeout=20)
        except PlaywrightTimeoutError:
            page.reload()
            wait_text(page, "#title", f"Patch {PATCHES}", timeout=30)

        acks = [int(f["seq"]) for f in editor.of("ack")]
        applied = editor.applied_seqs()
        errors = editor.of("error")

    assert acks == list(range(1, PATCHES + 1)), acks  # each patch appended exactly once
    assert not errors, errors
    # The agent confirms in seq order and never twice: what the editor saw only goes forward.
    assert applied == sorted(set(applied)), applied
    assert applied[-1] == PATCHES
    assert applied_at_kill >= KILL_AFTER_APPLIED
    # Nothing lost: every patch's file is on disk, the component is the last patch's.
    notes = workspace / "src" / "notes"
    assert sorted(int(p.stem) for p in notes.iterdir()) == list(range(1, PATCHES + 1))
    assert all((notes / f"{n}.txt").read_text() == f"note {n}\n" for n in range(1, PATCHES + 1))
    assert (workspace / "src/App.jsx").read_text() == app_source(f"Patch {PATCHES}")
    state = json.loads((workspace / ".preview-agent" / "state.json").read_text())
    assert state == {"session": session.id, "appliedSeq": PATCHES, "epoch": welcome["epoch"]}
    assert page.text_content("#title") == f"Patch {PATCHES}"

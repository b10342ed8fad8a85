"""A web process SIGKILLed in the middle of an editor's stream of patches: the panel shows
`offline`, keeps what the user types, and once a web process answers again every patch is in
the session's log exactly once and the preview shows the last one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.browser import chromium
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, running_stack, web_process
from tests.e2e.test_panel import wait_state, wait_title
from tests.faults.panel import open_panel, panel_site
from tests.redis_claim import redis_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EDITS = 40
KILL_AFTER = 15
# Types one edit every 40 ms from inside the page, whatever the socket is doing.
TYPE = """([count]) => new Promise((done) => {
  const panel = document.querySelector('#panel');
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    panel.writeFile('src/App.jsx',
      `export default function App() { return <main><h1 id="title">Edit ${n}</h1></main> }\\n`);
    window.__typed = n;
    if (n === count) { clearInterval(timer); done(n); }
  }, 40);
})"""


def test_a_web_killed_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    site_port, port = free_port(), free_port()
    with (
        running_stack(
            tmp_path / "stack",
            redis_url=redis_url("FAULTS_REDIS_URL", "faults"),
            pool_min=1,
            pool_max=2,
            extra_env={"PREVIEW_ALLOWED_ORIGINS": f"http://127.0.0.1:{site_port}"},
        ) as stack,
        chromium() as browser,
    ):
        api = f"http://localhost:{port}"
        with panel_site(tmp_path, stack, api, site_port) as url:
            page = browser.new_context().new_page()
            with web_process(stack, tmp_path, port, stop_signal=signal.SIGKILL):
                open_panel(page, url)
                page.evaluate(f"void ({TYPE})([{EDITS}])")
                page.wait_for_function(f"window.__typed >= {KILL_AFTER}", timeout=30_000)
            # SIGKILLed with patches in flight; the page goes on typing.
            wait_state(page, "offline")
            page.wait_for_function(f"window.__typed === {EDITS}", timeout=30_000)
            with web_process(stack, tmp_path, port):
                wait_state(page, "ready")
                wait_title(page, f"Edit {EDITS}")
                connection = "document.querySelector('#panel').connection"
                session = page.evaluate("document.querySelector('#panel').session")
                token = page.evaluate(f"{connection}.token")
                probe = Session(session["id"], token, "", "", session)
                with Editor(probe.editor_url(stack.base_url)) as editor:
                    welcome = editor.hello()
                    deadline = time.monotonic() + 15
                    while len(editor.of("patch")) < welcome["head"]:
                        assert time.monotonic() < deadline, welcome
                        time.sleep(0.05)
                    titles = [
                        p["changes"][0]["content"].split('"title">')[1].split("<")[0]
                        for p in editor.of("patch")
                    ]
                # Each edit once, in order: none lost with the killed process, none doubled by
                # the resend after it.
                assert titles == [f"Edit {n}" for n in range(1, EDITS + 1)], titles
                stack.end(probe)

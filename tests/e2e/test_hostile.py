"""Hostile input end to end: what an editor (or a page on another origin) may send is refused
with an error frame, a close code or an HTTP status, and nothing reaches the machine's disk."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.session_tokens import mint_session_token
from tests.e2e.browser import PageLog, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import TEMPLATES, TOKEN_SECRET, Session, Stack, app_source

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MARKER = f"HOSTILE-{uuid.uuid4().hex}"


def patch_frame(seq: int, path: str, content: str = MARKER) -> str:
    change = {"path": path, "content": content}
    return json.dumps({"v": 1, "type": "patch", "seq": seq, "changes": [change]})


# Refused by the gateway: never appended, never relayed.
REFUSED_FRAMES = [
    (patch_frame(2, "../../etc/x"), "invalid_frame"),
    (patch_frame(2, "/etc/x"), "invalid_frame"),
    (patch_frame(2, "src/../../../x"), "invalid_frame"),
    (patch_frame(2, "src\\..\\x.js"), "invalid_frame"),
    (patch_frame(2, "src/nul\u0000.js"), "invalid_frame"),
    (patch_frame(2, "src/big.js", MARKER + "x" * (512 * 1024)), "invalid_frame"),
    ("this is not json", "malformed"),
    ("[1, 2, 3]", "malformed"),
    (json.dumps({"v": 2, "type": "patch", "seq": 2, "changes": []}), "unsupported_version"),
    (json.dumps({"v": 1, "type": "patch", "seq": 2, "changes": []}), "invalid_frame"),
    (json.dumps({"v": 1, "type": "patch", "seq": "2", "changes": []}), "invalid_frame"),
    (json.dumps({"v": 1, "type": "shell", "command": "rm -rf /"}), "invalid_frame"),
]
# Valid frames the agent refuses on the machine (the seq is consumed, nothing written).
REJECTED_BY_AGENT = [
    ("node_modules/evil.js", "reserved_path"),
    (".preview-agent/state.json", "reserved_path"),
    (".vite/deps/react.js", "reserved_path"),
]


def project_files(workspace: Path) -> dict[str, bytes]:
    """The project as served (not the shared install, Vite's cache or the agent's state)."""
    skip = {"node_modules", ".vite", ".preview-agent"}
    return {
        path.relative_to(workspace).as_posix(): path.read_bytes()
        for path in sorted(workspace.rglob("*"))
        if path.relative_to(workspace).parts[0] not in skip and path.is_file()
    }


def files_holding(root: Path, needle: str) -> list[Path]:
    """Regular files under `root` (symlinks not followed) that contain `needle`."""
    found = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 8 * 1024 * 1024:
            continue
        if needle.encode() in path.read_bytes():
            found.append(path)
    return found


def refused_status(url: str, port: int) -> int:
    """The HTTP status a WebSocket upgrade to `url` (its host sent to 127.0.0.1:port) got."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with pytest.raises(InvalidStatus) as refused:
            with connect(url, sock=sock, open_timeout=10):
                pass
    return refused.value.response.status_code


def test_hostile_input_is_refused_and_nothing_is_written(
    stack: Stack, session: Session, page: Page, page_log: PageLog, context: BrowserContext
) -> None:
    workspace = stack.workspace(session.machine_id)
    base = stack.base_url
    with Editor(session.editor_url(base)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("src/App.jsx", app_source("Guarded")))
        before = project_files(workspace)
        machine_entries = sorted(p.name for p in workspace.parent.iterdir())

        for text, code in REFUSED_FRAMES:
            mark = editor.mark()
            editor.send_raw(text)
            error = editor.wait("error", after=mark)
            assert error["code"] == code, (text[:80], error)
        assert editor.hello(last_seq=1)["head"] == 1  # nothing was appended

        mark = editor.mark()
        for path, _ in REJECTED_BY_AGENT:
            editor.write(path, MARKER)
        last = 1 + len(REJECTED_BY_AGENT)
        editor.wait("error", lambda f: f.get("seq") == last, after=mark)
        assert [(e["seq"], e["code"]) for e in editor.of("error", mark)] == [
            (seq, code) for seq, (_, code) in enumerate(REJECTED_BY_AGENT, start=2)
        ]
        assert not editor.of("applied", mark)

    # A frame over the 1 MiB cap closes the socket (1009) before anything is parsed.
    with Editor(session.editor_url(base)) as flood:
        flood.send_raw(patch_frame(9, "src/huge.js", MARKER + "y" * (1100 * 1024)))
        assert flood.wait_closed() == 1009

    # The editor socket wants this session's token: garbage, another session's (validly
    # signed) and an expired one are refused before the handshake completes.
    expired = mint_session_token(TOKEN_SECRET.encode(), uuid.UUID(session.id), int(time.time()) - 5)
    other = mint_session_token(TOKEN_SECRET.encode(), uuid.uuid4(), int(time.time()) + 600)
    for token in ("garbage", other, expired, session.token[:-2] + "AA"):
        with pytest.raises(InvalidStatus) as refused:
            Editor(session.editor_url(base, token=token))
        assert refused.value.response.status_code == 403

    # The preview origin: without a token 401, with a wrong one 403, in the browser itself.
    origin = f"http://{session.preview_host}/"
    for url, status in (
        (origin, 401),
        (f"{origin}?token=garbage", 403),
        (f"{origin}?token={other}", 403),
    ):
        response = page.goto(url)
        assert response is not None and response.status == status, url
        assert "a valid preview token is required" in (page.text_content("body") or "")
        assert page.query_selector("#title") is None
    assert not context.cookies()
    # Its sockets take the cookie only: a session token in the query does not open them.
    for query in ("", f"?token={session.token}"):
        status = refused_status(f"ws://{session.preview_host}/{query}", stack.port)
        assert status in (401, 403)

    # Nothing of it reached the disk, inside the workspace or outside it.
    assert project_files(workspace) == before
    assert sorted(p.name for p in workspace.parent.iterdir()) == machine_entries
    assert files_holding(stack.data_dir, MARKER) == []
    assert not Path("/etc/x").exists()
    assert not (stack.data_dir / "machines" / "etc").exists()
    assert not (stack.data_dir / "x").exists() and not (workspace.parent / "x").exists()
    assert not (TEMPLATES / "react-web" / "node_modules" / "evil.js").exists()

    # And the session still works: the next edit (seq 5) reaches the browser.
    with Editor(session.editor_url(base)) as editor:
        editor.hello(last_seq=4)
        open_preview(page, page_log, session, "Guarded")
        seq = editor.write("src/App.jsx", app_source("Still fine"))
        assert seq == 2 + len(REJECTED_BY_AGENT)
        wait_text(page, "#title", "Still fine")
        editor.wait_applied(seq)
    assert project_files(workspace) == {**before, "src/App.jsx": app_source("Still fine").encode()}

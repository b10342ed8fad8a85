"""`<preview-panel>` falling back to Appetize, in Chromium, against a real `web` process (real
Postgres and Redis): a start that fails (the pool exhausted, no on-demand boot) makes the panel
show the project's Appetize embed in its `fallback` part, with the device parameters of the
project's Appetize settings, and report the arm's stages in order; the fallback is recorded, so
the next panel asks `GET /api/preview/backend` and goes straight to Appetize.

Appetize itself cannot be reached here: PREVIEW_APPETIZE_EMBED_URL points at a local stand-in
served at the same path shape (/embed/{publicKey}), which posts the cross-document messages
Appetize's embed posts to its parent (`firstFrameReceived`)."""

from __future__ import annotations

import contextlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Page

from app.settings import Settings
from tests.conftest import User, free_port, make_user
from tests.e2e.browser import chromium
from tests.integration.helpers import web_processes
from tests.integration.test_rollout_flags import reset_flags

pytestmark = pytest.mark.slow

PUBLIC_KEY = "pk_standin_42"
APPETIZE = ("ios", "iphone15pro", "17.0", "75")
TIMEOUT_MS = 20_000

# What Appetize's embed does, as far as the panel can tell: a page at /embed/{publicKey} that
# posts its events to the parent window once its device shows (cross-document messages).
STANDIN = """<!doctype html><html><head><title>Appetize stand-in</title></head>
<body><p id="device"></p><script>
  const query = new URLSearchParams(location.search);
  document.getElementById("device").textContent = query.get("device");
  parent.postMessage("sessionRequested", "*");
  setTimeout(() => parent.postMessage({ type: "firstFrameReceived" }, "*"), 50);
  setTimeout(() => parent.postMessage({ type: "firstFrameReceived" }, "*"), 100);
  setTimeout(() => parent.postMessage("appLaunch", "*"), 150);
</script></body></html>"""

EDITOR = """<!doctype html><html><head><title>editor</title></head><body>
<preview-panel id="panel" style="display:block;height:720px"></preview-panel>
<script type="module">
  const params = new URLSearchParams(location.search);
  await import(params.get("api") + "/ui/client/panel.js");
  const panel = document.getElementById("panel");
  window.__stages = [];
  panel.addEventListener("preview-appetize-stage", (e) => window.__stages.push(e.detail.stage));
  panel.setAttribute("api", params.get("api"));
  panel.setAttribute("project-id", params.get("project"));
  panel.getAccessToken = () => params.get("token");
</script></body></html>"""


class _Pages(http.server.BaseHTTPRequestHandler):
    """The editor's page at /editor.html; the stand-in at /embed/{key}, each request logged."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        path = urlsplit(self.path).path
        if path == "/editor.html":
            body = EDITOR
        elif path.startswith("/embed/"):
            body = STANDIN
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(port: int) -> Iterator[list[str]]:
    seen: list[str] = []
    handler = type("Pages", (_Pages,), {"requests": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, str, str, list[str]]]:
    """(api, editor origin, stand-in origin, the stand-in's requests): the rollout at 100 %
    (every editor on the new system), no machine and no on-demand boot."""
    db = settings.database_url or ""
    reset_flags(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE preview_rollout SET percentage = 100")
        conn.execute("TRUNCATE appetize_arm_sessions CASCADE")
    site, standin = free_port(), free_port()
    extra = {
        "PREVIEW_ONDEMAND_MAX": "0",
        "PREVIEW_METRICS_PORT": "0",
        "PREVIEW_ALLOWED_ORIGINS": f"http://127.0.0.1:{site}",
        "PREVIEW_APPETIZE_EMBED_URL": f"http://127.0.0.1:{standin}/embed/",
    }
    with (
        serving(site),
        serving(standin) as standin_requests,
        web_processes(db, tmp_path, 1, extra) as urls,
    ):
        yield urls[0], f"http://127.0.0.1:{site}", f"http://127.0.0.1:{standin}", standin_requests
    reset_flags(db)  # the next test's flags are its own


def with_appetize(db: str, user: User) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO appetize_previews (project_id, public_key, platform, device,
                   os_version, scale) VALUES (%s, %s, %s, %s, %s, %s)""",
            (user.project_id, PUBLIC_KEY, *APPETIZE),
        )


def open_editor(page: Page, api: str, site: str, user: User) -> None:
    query = httpx.QueryParams({"api": api, "project": str(user.project_id), "token": user.token})
    page.goto(f"{site}/editor.html?{query}")


def wait_embed(page: Page) -> str:
    """The Appetize iframe's URL, once the panel shows it."""
    page.wait_for_function(
        "() => document.getElementById('panel')?.appetize?.sessionId != null",
        timeout=TIMEOUT_MS,
    )
    src: str = page.evaluate("() => document.getElementById('panel').appetize.iframe.src")
    return src


def arm_rows(db: str, user: User) -> list[tuple[str, str, list[str]]]:
    """(session id, reason, stages in order) of the user's Appetize-arm sessions."""
    with psycopg.connect(db) as conn:
        sessions = conn.execute(
            "SELECT id, reason FROM appetize_arm_sessions WHERE user_id = %s ORDER BY created_at",
            (user.id,),
        ).fetchall()
        out = []
        for session_id, reason in sessions:
            stages = conn.execute(
                "SELECT stage FROM appetize_arm_events WHERE session_id = %s ORDER BY at, id",
                (session_id,),
            ).fetchall()
            out.append((str(session_id), reason, [s for (s,) in stages]))
    return out


def wait_stages(
    page: Page, db: str, user: User, wanted: list[str]
) -> list[tuple[str, str, list[str]]]:
    """Until the user's latest arm session has recorded exactly `wanted`."""
    for _ in range(200):
        rows = arm_rows(db, user)
        if rows and rows[-1][2] == wanted:
            return rows
        page.wait_for_timeout(50)
    raise AssertionError(f"stages never {wanted}: {arm_rows(db, user)}")


def test_a_failed_start_shows_the_appetize_embed_and_reports_its_stages(
    settings: Settings, stack: tuple[str, str, str, list[str]]
) -> None:
    api, site, standin, standin_requests = stack
    db = settings.database_url or ""
    user = make_user(db)
    with_appetize(db, user)

    with chromium() as browser:
        page = browser.new_page()
        open_editor(page, api, site, user)
        src = wait_embed(page)

        # The stand-in at the embed URL's path, with the project's device parameters.
        url = urlsplit(src)
        assert f"{url.scheme}://{url.netloc}" == standin
        assert url.path == f"/embed/{PUBLIC_KEY}"
        assert parse_qs(url.query) == {
            "device": ["iphone15pro"],
            "osVersion": ["17.0"],
            "scale": ["75"],
            "autoplay": ["true"],
            "xdocMsg": ["true"],
        }
        page.wait_for_function(
            "() => document.getElementById('panel').getAttribute('backend') === 'appetize'"
            " && document.getElementById('panel').hasAttribute('fallback')",
            timeout=TIMEOUT_MS,
        )
        # Shown in the panel's fallback part, with what the stand-in read off its URL.
        frame = page.frame_locator("#panel >> [part=fallback] iframe.appetize")
        assert frame.locator("#device").text_content(timeout=TIMEOUT_MS) == "iphone15pro"
        assert any(r.startswith(f"/embed/{PUBLIC_KEY}?") for r in standin_requests)

        rows = wait_stages(page, db, user, ["requested", "embed_loaded", "first_frame"])
        session_id, reason, _ = rows[-1]
        assert reason == "fallback"
        page.evaluate("() => document.getElementById('panel').reportEditVisible(2345)")
        wait_stages(page, db, user, ["requested", "embed_loaded", "first_frame", "edit_visible"])
        page.evaluate("() => document.getElementById('panel').end()")
        wait_stages(
            page, db, user, ["requested", "embed_loaded", "first_frame", "edit_visible", "ended"]
        )
        assert page.evaluate("() => window.__stages") == [
            "requested",
            "embed_loaded",
            "first_frame",
            "edit_visible",
            "ended",
        ]
        page.close()

    with psycopg.connect(db) as conn:
        latency = conn.execute(
            """SELECT detail FROM appetize_arm_events
               WHERE session_id = %s AND stage = 'edit_visible'""",
            (session_id,),
        ).fetchone()
        fallbacks = conn.execute(
            "SELECT reason FROM preview_fallbacks WHERE project_id = %s", (user.project_id,)
        ).fetchall()
        sessions = conn.execute(
            "SELECT count(*) FROM preview_sessions WHERE user_id = %s", (user.id,)
        ).fetchone()
    assert latency == ({"latencyMs": 2345},)
    assert fallbacks == [("pool_exhausted",)]
    assert sessions == (0,)  # the lease was refused: nothing was started


def test_after_a_fallback_the_next_panel_goes_straight_to_appetize(
    settings: Settings, stack: tuple[str, str, str, list[str]]
) -> None:
    api, site, _, _ = stack
    db = settings.database_url or ""
    user = make_user(db)
    with_appetize(db, user)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO preview_fallbacks (project_id, user_id, reason)
               VALUES (%s, %s, 'boot_failed')""",
            (user.project_id, user.id),
        )
    answer = httpx.get(
        f"{api}/api/preview/backend",
        params={"projectId": str(user.project_id)},
        headers=user.headers,
        trust_env=False,
    )
    assert (answer.json()["backend"], answer.json()["reason"]) == ("appetize", "fallback")

    with chromium() as browser:
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(f"{r.method} {urlsplit(r.url).path}"))
        open_editor(page, api, site, user)
        wait_embed(page)
        wait_stages(page, db, user, ["requested", "embed_loaded", "first_frame"])
        page.close()

    assert "GET /api/preview/backend" in requests
    assert "POST /api/preview/sessions" not in requests  # the new system was not tried
    [(session_id, reason, _)] = arm_rows(db, user)
    assert reason == "fallback" and uuid.UUID(session_id)
    with psycopg.connect(db) as conn:
        recorded = conn.execute(
            "SELECT count(*) FROM preview_fallbacks WHERE project_id = %s", (user.project_id,)
        ).fetchone()
    assert recorded == (1,)  # asking again records nothing new

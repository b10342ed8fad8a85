"""The editor's side in Chromium: `<preview-panel>` embedded in a page on another site (the
docs' own example), CORS as a browser sees it, the demo editor at `/` (typing updates the
preview, status and latency), device switching with the app's state kept, a web process
restarted under an open panel, accessibility, and the README's screenshots."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, FrameLocator, Page, expect

from tests.conftest import free_port
from tests.e2e.editor import Editor
from tests.e2e.sites import fenced_file, static_site
from tests.e2e.stack import REPO, Session, Stack, web_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DOCS = REPO / "docs" / "embedding.md"
SCREENSHOTS = REPO / "docs" / "screenshots"
PLACEHOLDER = "http://localhost:8000"
STATE_TIMEOUT = 60_000


def api_base(stack: Stack) -> str:
    """The API as `dev` publishes it (its previewUrl and wsUrl are built from it)."""
    return f"http://localhost:{stack.port}"


def preview(page: Page, panel: str = "preview-panel") -> FrameLocator:
    return page.frame_locator(f"{panel} .screen iframe").first


def wait_state(page: Page, state: str, panel: str = "preview-panel") -> None:
    try:
        page.wait_for_function(
            "([sel, state]) => document.querySelector(sel)?.getAttribute('state') === state",
            arg=[panel, state],
            timeout=STATE_TIMEOUT,
        )
    except Exception as exc:
        seen = page.evaluate(
            "(sel) => { const p = document.querySelector(sel); return p && JSON.stringify("
            "{state: p.getAttribute('state'), fallback: p.fallback,"
            " text: p.shadowRoot?.textContent?.slice(0, 400)}) }",
            panel,
        )
        raise AssertionError(f"panel never {state}: {seen}") from exc


def record_events(page: Page, panel: str, *names: str) -> None:
    """Collect the panel's events (with their time) in `window.__events`."""
    page.evaluate(
        """([sel, names]) => {
            window.__events = window.__events || [];
            const el = document.querySelector(sel);
            for (const name of names) {
                el.addEventListener(name, (e) => window.__events.push(
                    {name, at: performance.now(), detail: JSON.parse(JSON.stringify(e.detail))}));
            }
        }""",
        [panel, list(names)],
    )


def events(page: Page, name: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__events || []")
    return [e for e in found if name is None or e["name"] == name]


def end_panel_session(page: Page, stack: Stack, panel: str = "preview-panel") -> None:
    session_id = page.evaluate(f"document.querySelector('{panel}')?.session?.id")
    if session_id:
        stack.http.delete(
            f"{stack.base_url}/api/preview/sessions/{session_id}", headers=stack.headers
        )


# -- another site embeds the panel (the docs' plain HTML example) ------------------------------


def test_a_page_on_another_site_embeds_the_preview_and_cors_holds(
    stack: Stack, page: Page, editor_site_port: int, tmp_path: Path
) -> None:
    stack.wait_ready_machines(1)
    site = tmp_path / "site"
    site.mkdir()
    example = fenced_file(DOCS.read_text(), "embed.html")
    assert PLACEHOLDER in example
    (site / "embed.html").write_text(example.replace(PLACEHOLDER, api_base(stack)))
    (site / "other.html").write_text("<!doctype html><title>elsewhere</title>")
    with static_site(site, editor_site_port) as origin:
        page.goto(f"{origin}/embed.html")
        wait_state(page, "ready")
        # The app renders inside the cross-site iframe (its cookie is partitioned).
        title = preview(page).locator("#title")
        title.wait_for(timeout=STATE_TIMEOUT)
        frame_url = page.evaluate("document.querySelector('preview-panel').session.previewOrigin")
        assert ".preview.localhost" in frame_url and not frame_url.startswith(origin)

        # A preflighted request (Authorization) from this allowed origin passes and its answer
        # is readable, Retry-After and x-request-id included.
        allowed = page.evaluate(
            """async (api) => {
                const r = await fetch(api + '/api/preview/sessions', {
                    headers: {authorization: 'Bearer not-a-token'}});
                return {status: r.status, id: r.headers.get('x-request-id')};
            }""",
            api_base(stack),
        )
        assert allowed["status"] == 401 and allowed["id"]
        end_panel_session(page, stack)

    # The same request from a site that is not allowed fails in the browser.
    with static_site(site, free_port()) as elsewhere:
        page.goto(f"{elsewhere}/other.html")
        refused = page.evaluate(
            """async (api) => {
                try {
                    await fetch(api + '/api/preview/sessions', {
                        headers: {authorization: 'Bearer not-a-token'}});
                    return 'passed';
                } catch (e) { return e.name; }
            }""",
            api_base(stack),
        )
        assert refused == "TypeError"


# -- the demo editor -----------------------------------------------------------------------------


def open_demo(page: Page, stack: Stack) -> None:
    """The demo, once its project is in the preview: the panel is ready (and so the preview
    loaded) before the editor socket opens and the demo uploads its files, which the preview
    then hot-updates to."""
    stack.wait_ready_machines(1)
    response = page.goto(f"{stack.base_url}/")
    assert response is not None and response.ok
    wait_state(page, "ready", "#panel")
    match = re.search(r'id="title">([^<]+)<', demo_source(page, "src/App.jsx"))
    assert match, "the demo's App.jsx has no #title"
    expect(preview(page, "#panel").locator("#title")).to_have_text(
        match.group(1), timeout=STATE_TIMEOUT
    )


def demo_source(page: Page, path: str) -> str:
    source: str = page.evaluate("(p) => window.demo.files[p] ?? window.demo.files.get?.(p)", path)
    return source


def test_typing_in_the_demo_updates_the_preview(stack: Stack, page: Page) -> None:
    open_demo(page, stack)
    record_events(page, "#panel", "preview-status", "preview-applied")
    app = demo_source(page, "src/App.jsx")
    old_title = preview(page, "#panel").locator("#title").inner_text()
    assert old_title and old_title in app

    page.locator('[data-file="src/App.jsx"]').click()
    editor = page.locator("#editor .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(app.replace(old_title, "Typed in the demo"))

    title = preview(page, "#panel").locator("#title")
    deadline = time.monotonic() + 30
    while title.inner_text() != "Typed in the demo":
        assert time.monotonic() < deadline, title.inner_text()
        page.wait_for_timeout(50)
    wait_state(page, "ready", "#panel")
    states = [e["detail"]["state"] for e in events(page, "preview-status")]
    assert "updating" in states, states
    assert states[states.index("updating") :].count("ready") >= 1, states
    applied = events(page, "preview-applied")
    assert applied, "no applied event"
    latency = applied[-1]["detail"]["latencyMs"]
    assert isinstance(latency, int | float) and 0 < latency < 30_000
    shown = page.locator("#applied-latency").inner_text()
    assert "ms" in shown
    end_panel_session(page, stack, "#panel")


def test_switching_device_resizes_the_frame_and_keeps_the_apps_state(
    stack: Stack, page: Page
) -> None:
    open_demo(page, stack)
    session_id = page.evaluate("document.querySelector('#panel').session.id")
    app = preview(page, "#panel")
    counter = app.locator("#counter")
    for _ in range(3):
        counter.dispatch_event("click")
    assert counter.inner_text() == "count is 3"
    screen = page.locator("#panel .screen iframe").first
    before = screen.evaluate("(f) => [f.offsetWidth, f.offsetHeight]")

    page.locator("#panel #device-select").select_option("pixel-8")
    page.wait_for_function(
        "(before) => { const f = document.querySelector('#panel')"
        ".shadowRoot.querySelector('.screen iframe');"
        " return f.offsetWidth !== before[0] || f.offsetHeight !== before[1]; }",
        arg=before,
        timeout=10_000,
    )
    after = screen.evaluate("(f) => [f.offsetWidth, f.offsetHeight]")
    assert after == [412, 915], after  # the Pixel 8's CSS viewport, scaled by a transform
    # The same session and the same page: the app kept its state.
    assert page.evaluate("document.querySelector('#panel').session.id") == session_id
    assert counter.inner_text() == "count is 3"
    page.locator("#panel button.rotate").click()
    page.wait_for_function(
        "() => document.querySelector('#panel').shadowRoot"
        ".querySelector('.screen iframe').offsetWidth === 915",
        timeout=10_000,
    )
    assert counter.inner_text() == "count is 3"
    end_panel_session(page, stack, "#panel")


def test_the_demo_is_accessible_and_its_screenshots_are_current(
    stack: Stack, context: BrowserContext
) -> None:
    page = context.new_page()
    page.set_viewport_size({"width": 1440, "height": 900})
    open_demo(page, stack)
    page.add_script_tag(url=f"{stack.base_url}/ui/vendor/axe-core/axe.min.js")
    results = page.evaluate(
        """async () => {
            const r = await axe.run(document, {iframes: false});
            return r.violations.map((v) => ({id: v.id, impact: v.impact,
                nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3)}));
        }"""
    )
    serious = [v for v in results if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(serious, indent=1)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#panel #device-select").select_option("iphone-15")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "demo-phone.png"))
    page.locator("#panel #device-select").select_option("laptop")
    page.wait_for_timeout(500)
    page.screenshot(path=str(SCREENSHOTS / "demo-desktop.png"))
    for name in ("demo-phone.png", "demo-desktop.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000
    end_panel_session(page, stack, "#panel")


# -- a web process restarted under an open panel --------------------------------------------------

PANEL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>panel</title></head>
<body><main>
<preview-panel id="panel" api="API" project-id="PROJECT" device="laptop" autostart="false"
  style="display:block;height:700px"></preview-panel>
</main>
<script type="module">
  import "API/ui/client/panel.js";
  const panel = document.getElementById("panel");
  panel.getAccessToken = () => "TOKEN";
  panel.start();
</script></body></html>
"""


def test_a_web_restart_shows_offline_then_recovers_without_losing_an_edit(
    stack: Stack, page: Page, editor_site_port: int, tmp_path: Path
) -> None:
    stack.wait_ready_machines(1)
    port = free_port()
    api = f"http://localhost:{port}"
    site = tmp_path / "site"
    site.mkdir()
    (site / "panel.html").write_text(
        PANEL_PAGE.replace("API", api)
        .replace("PROJECT", stack.project_id)
        .replace("TOKEN", stack.admin_token)
    )
    with static_site(site, editor_site_port) as origin:
        with web_process(stack, tmp_path, port):
            logged: list[str] = []
            page.on("console", lambda message: logged.append(message.text))
            page.goto(f"{origin}/panel.html")
            wait_state(page, "ready")
            # An edit applied before the page's HMR socket is up never reaches that page
            # (docs/embedding.md, "Known limits"): wait for it, as the other browser tests do.
            deadline = time.monotonic() + 30
            while "[vite] connected." not in logged:
                assert time.monotonic() < deadline, logged
                page.wait_for_timeout(25)
            write(page, 1)
            wait_title(page, "Edit 1")
        # The web process is gone: the panel says so, and keeps what the user types.
        wait_state(page, "offline")
        write(page, 2)
        write(page, 3)
        with web_process(stack, tmp_path, port):
            wait_state(page, "ready")
            wait_title(page, "Edit 3")
            session: dict[str, Any] = page.evaluate("document.querySelector('#panel').session")
            # Nothing was lost or doubled: the session's stream holds the three edits once.
            token = page.evaluate("document.querySelector('#panel').connection.token")
            probe = Session(session["id"], token, session["previewUrl"], "", session)
            with Editor(probe.editor_url(f"http://127.0.0.1:{port}")) as editor:
                welcome = editor.hello()
                assert welcome["head"] == 3, welcome
                assert welcome["applied"] == 3, welcome
            end_panel_session(page, stack, "#panel")


def write(page: Page, n: int) -> None:
    source = f"""export default function App() {{
  return <main><h1 id="title">Edit {n}</h1></main>
}}
"""
    page.evaluate("(src) => document.querySelector('#panel').writeFile('src/App.jsx', src)", source)


def wait_title(page: Page, text: str) -> None:
    title = preview(page, "#panel").locator("#title")
    deadline = time.monotonic() + 60
    while True:
        try:
            if title.inner_text(timeout=2000) == text:
                return
        except Exception:  # the frame is reloading (Vite reloads after the server came back)
            pass
        assert time.monotonic() < deadline, (
            f"preview never showed {text!r}: "
            + page.evaluate(
                "(() => { const c = document.querySelector('#panel').connection;"
                " return JSON.stringify({last: c.lastSeq, applied: c.appliedSeq,"
                " pending: c.pendingCount, state: c.state}) })()"
            )
            + " "
            + str([f.url for f in page.frames])
        )
        page.wait_for_timeout(100)

"""The expo template in Chromium: Expo's web build (react-native-web through Metro) in the
preview, an edit of App.js hot-reloaded by Fast Refresh with the component's state kept, a
syntax error as `buildError` naming the file and line, and the Expo manifest served on the
session's own preview origin.

The panel's QR code for an `expo` session holds the Expo Go link (`exp://`) and says "Scan with
Expo Go"; what the code holds, opened the way Expo Go opens it, reaches the session's manifest
on its device host (docs/templates.md, "Expo Go and Appetize").

A stack of its own (`expo` is not one of the package stack's templates), on a Redis database
claimed for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.browser import PageLog, assert_hmr_through_proxy, wait_socket, wait_text
from tests.e2e.editor import Editor
from tests.e2e.sites import fenced_file, static_site
from tests.e2e.stack import Session, Stack, running_stack
from tests.e2e.test_panel import DOCS, PLACEHOLDER, api_base, end_panel_session, wait_state
from tests.integration.test_expo_template import app_source
from tests.redis_claim import redis_url

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REDIS_URL = redis_url("E2E_EXPO_REDIS_URL", "e2e-expo")
TITLE = "[data-testid=title]"
COUNTER = "[data-testid=counter]"
APPETIZE_IOS_KEY = "expo-go-ios-e2e"


@pytest.fixture(scope="module")
def expo_stack(tmp_path_factory: pytest.TempPathFactory, editor_site_port: int) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e-expo"),
        redis_url=REDIS_URL,
        templates="expo",
        pool_min=1,
        pool_max=2,
        # The panel's test embeds it in a page of the editor's site.
        extra_env={
            "PREVIEW_ALLOWED_ORIGINS": f"http://127.0.0.1:{editor_site_port}",
            # An Expo Go build on Appetize for iOS (the panel's device is an iPhone).
            "PREVIEW_APPETIZE_EXPO_GO_IOS_KEY": APPETIZE_IOS_KEY,
        },
    ) as running:
        yield running


@pytest.fixture
def expo_session(expo_stack: Stack) -> Iterator[Session]:
    expo_stack.wait_ready_machines(1)
    leased = expo_stack.lease()
    try:
        yield leased
    finally:
        expo_stack.end(leased)


def _open(page: Page, session: Session, title: str) -> None:
    response = page.goto(session.preview_url)
    assert response is not None and response.ok, response and response.status
    wait_text(page, TITLE, title, timeout=60)
    assert urlsplit(page.url).netloc == session.preview_host


def test_an_edit_of_app_js_fast_refreshes_the_web_preview_and_keeps_the_counter(
    expo_stack: Stack, expo_session: Session, page: Page, page_log: PageLog
) -> None:
    assert expo_session.raw["template"] == "expo"
    with Editor(expo_session.editor_url(expo_stack.base_url)) as editor:
        editor.hello()
        editor.wait_applied(editor.write("App.js", app_source("Expo v1")))
        _open(page, expo_session, "Expo v1")
        # Metro's HMR client connects once the bundle ran; an edit before that would be missed.
        wait_socket(page, page_log, "/hot")
        page.click(COUNTER)
        page.click(COUNTER)
        wait_text(page, COUNTER, "count is 2")
        page.evaluate("window.__e2eMarker = 'same document'")
        navigations = page_log.navigations

        mark = editor.mark()
        seq = editor.write("App.js", app_source("Expo v2"))
        wait_text(page, TITLE, "Expo v2", timeout=30)
        editor.wait_applied(seq, after=mark)
        assert not editor.of("buildError", after=mark)

        # A syntax error: reported with its place; the page keeps the last good render.
        mark = editor.mark()
        seq = editor.write("App.js", app_source("never shown", broken=True))
        error = editor.wait("buildError", after=mark)
        assert (error["file"], error["line"], error["column"]) == ("App.js", 8, 15)
        editor.wait_applied(seq, after=mark)
        mark = editor.mark()
        seq = editor.write("App.js", app_source("Expo v3"))
        wait_text(page, TITLE, "Expo v3", timeout=30)
        editor.wait("status", lambda f: f["state"] == "ready", after=mark)

    # Fast Refresh re-rendered the component in the same document: its state survived.
    assert page.text_content(COUNTER) == "count is 2"
    assert page.evaluate("window.__e2eMarker") == "same document"
    assert page_log.navigations == navigations
    assert_hmr_through_proxy(page_log, expo_session)


def test_expo_go_opens_the_session_with_the_share_links_token_and_no_cookie(
    expo_stack: Stack, expo_session: Session
) -> None:
    """What Expo Go does with the panel's QR code, minus the phone: GET the exp:// URL as
    http:// with `expo-platform`, follow the redirect, then fetch the manifest's bundle, never
    holding a cookie."""
    share = expo_stack.share(expo_session)
    expo_go = share["expoGoUrl"]
    assert expo_go.startswith("exp://") and "token=" in expo_go
    manifest_url = "http://" + expo_go.removeprefix("exp://")
    with httpx.Client(trust_env=False, timeout=120) as http:
        for platform in ("ios", "android"):
            answer = _get(http, manifest_url, {"expo-platform": platform})
            assert answer.status_code == 200, answer.text[:300]
            manifest = answer.json()
            bundle_url = manifest["launchAsset"]["url"]
            assert f"platform={platform}" in bundle_url
            bundle = _get(http, bundle_url, {})
            assert bundle.status_code == 200, bundle.text[:300]
            assert "count is" in bundle.text
        # The token was for the exchange only: the plain origin without it is refused.
        refused = _get(http, f"http://{expo_session.preview_host}/", {"expo-platform": "ios"})
        assert refused.status_code in (401, 403)


def test_the_qr_code_of_an_expo_session_opens_expo_go_on_its_device_host(
    expo_stack: Stack, page: Page, tmp_path: Path, editor_site_port: int
) -> None:
    expo_stack.wait_ready_machines(1)
    example = fenced_file(DOCS.read_text(), "embed.html")
    (tmp_path / "embed.html").write_text(
        example.replace(PLACEHOLDER, api_base(expo_stack)).replace(
            'template="react-web"', 'template="expo"'
        )
    )
    with static_site(tmp_path, editor_site_port) as origin:
        page.goto(f"{origin}/embed.html")
        wait_state(page, "ready")
        session_id = page.evaluate("document.querySelector('preview-panel').session.id")
        try:
            page.click("preview-panel button.qr")
            dialog = page.locator("preview-panel .qr-dialog")
            expect(dialog).to_be_visible()
            hint = dialog.locator(".qr-hint")
            expect(hint).to_be_visible()
            expect(hint).to_have_text("Scan with Expo Go")
            assert dialog.locator(".qr-code svg").count() == 1
            label = dialog.locator(".qr-code").get_attribute("aria-label") or ""
            web_link = dialog.locator(".qr-link").get_attribute("href") or ""
            scanned = label.removeprefix("QR code of ")
            host = f"{session_id}.preview.localhost:{expo_stack.port}"
            assert scanned.startswith(f"exp://{host}/?token="), label
            # The link under the code is the same share link, for a browser.
            assert web_link == "http://" + scanned.removeprefix("exp://")
            # The same session in Expo Go on an Appetize device, launched with the exp:// link.
            appetize = dialog.locator(".qr-appetize")
            expect(appetize).to_be_visible()
            launch = urlsplit(appetize.get_attribute("href") or "")
            assert launch.path == f"/embed/{APPETIZE_IOS_KEY}"
            assert parse_qs(launch.query)["launchUrl"] == [scanned]

            # What Expo Go does with the code: its manifest, on the device host, no cookie.
            with httpx.Client(trust_env=False, timeout=120) as http:
                manifest = _get(http, web_link, {"expo-platform": "ios"})
            assert manifest.status_code == 200, manifest.text[:300]
            bundle = urlsplit(manifest.json()["launchAsset"]["url"])
            assert bundle.netloc.startswith(f"{session_id}--")
            assert bundle.netloc.endswith(f".preview.localhost:{expo_stack.port}")
            assert parse_qs(bundle.query)["platform"] == ["ios"]
        finally:
            end_panel_session(page, expo_stack)


def _get(http: httpx.Client, url: str, headers: dict[str, str]) -> httpx.Response:
    """GET through the stack's port with the URL's host as `Host` (httpx cannot resolve
    *.localhost as Chromium does), following redirects as Expo Go's HTTP stack does: same
    headers, no cookies."""
    for _ in range(3):
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        local = f"http://127.0.0.1:{parts.port or 80}{target}"
        answer = http.get(local, headers={"Host": parts.netloc, **headers})
        http.cookies.clear()
        if answer.status_code not in (301, 302, 303, 307, 308):
            return answer
        url = str(httpx.URL(url).join(answer.headers["location"]))
    raise AssertionError(f"too many redirects from {url}")

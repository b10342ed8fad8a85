"""Binary assets in Chromium (docs/protocol.md, "Binary files"): PNGs sent as base64 patches are
served byte-identical on the session's preview origin (through the orchestrator's proxy, from
the machine's Vite) and shown by the app's <img> elements; replacing one is a hot update."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.e2e.assets_app import (
    IMPORTED,
    PUBLIC,
    PUBLIC_URL,
    assets_app_source,
    binary_change,
    png,
)
from tests.e2e.browser import PageLog, assert_hmr_through_proxy, open_preview, wait_text
from tests.e2e.editor import Editor
from tests.e2e.stack import Session, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FETCH = """async (url) => {
  const response = await fetch(url, { cache: 'no-store' })
  const bytes = new Uint8Array(await response.arrayBuffer())
  return { status: response.status, type: response.headers.get('content-type'), bytes: [...bytes] }
}"""

IMAGE_SHOWN = """([selector, width, height]) => {
  const img = document.querySelector(selector)
  return !!img && img.complete && img.naturalWidth === width && img.naturalHeight === height
}"""


def fetched(page: Page, path: str) -> tuple[int, str, bytes]:
    """GET `path` from the page's origin (the preview origin, with the page's cookie)."""
    answer: dict[str, Any] = page.evaluate(FETCH, path)
    return answer["status"], answer["type"], bytes(answer["bytes"])


def wait_image(page: Page, selector: str, width: int, height: int) -> None:
    """Until the <img> has loaded a picture of that size (a broken one has naturalWidth 0)."""
    page.wait_for_function(IMAGE_SHOWN, arg=[selector, width, height], timeout=15_000)


def test_a_png_sent_as_a_patch_is_served_byte_identical_and_shown_by_an_img(
    stack: Stack, session: Session, page: Page, page_log: PageLog
) -> None:
    logo, badge = png(24, 16), png(10, 30)
    assert b"\x00" in logo  # no text patch could carry it
    with Editor(session.editor_url(stack.base_url)) as editor:
        editor.hello()
        seq = editor.patch(
            [
                binary_change(IMPORTED, logo),
                binary_change(PUBLIC, badge),
                {"path": "src/App.jsx", "content": assets_app_source("Assets v1")},
            ]
        )
        assert editor.wait("ack", lambda f: f["seq"] == seq)
        editor.wait_applied(seq)

        open_preview(page, page_log, session, "Assets v1")
        assert fetched(page, f"/{IMPORTED}") == (200, "image/png", logo)
        assert fetched(page, PUBLIC_URL) == (200, "image/png", badge)
        wait_image(page, "#logo", 24, 16)
        wait_image(page, "#badge", 10, 30)
        page.click("#counter")
        wait_text(page, "#counter", "count is 1")
        navigations = page_log.navigations

        # Another picture at the same path: Vite hot-updates the App that imports it.
        wider = png(48, 20)
        mark = editor.mark()
        seq = editor.patch([binary_change(IMPORTED, wider)])
        wait_image(page, "#logo", 48, 20)
        editor.wait_applied(seq, after=mark)
        assert not editor.of("error", after=mark)

    assert fetched(page, f"/{IMPORTED}") == (200, "image/png", wider)
    assert page.text_content("#counter") == "count is 1"  # same document, state kept
    assert page_log.navigations == navigations
    assert_hmr_through_proxy(page_log, session)
    assert (stack.workspace(session.machine_id) / IMPORTED).read_bytes() == wider

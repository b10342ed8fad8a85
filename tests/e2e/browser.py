"""Debian's Chromium driven by Playwright for Python (which cannot download browsers here), and
what the tests read from a page besides its DOM. A missing browser is an error, never a skip.

Playwright's sync API delivers page events only while it is being called, so waiting loops
here sleep with `page.wait_for_timeout`, not `time.sleep`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Frame, Page, WebSocket, sync_playwright

from tests.e2e.stack import Session

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageLog:
    """What a page did besides its DOM: console lines, WebSockets it opened, navigations."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.sockets: list[str] = []
        self.navigations = 0
        page.on("console", self._console)
        page.on("websocket", self._socket)
        page.on("framenavigated", self._navigated)

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _socket(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)

    def _navigated(self, frame: Frame) -> None:
        if frame.parent_frame is None:
            self.navigations += 1


def wait_text(page: Page, selector: str, text: str, timeout: float = 15.0) -> None:
    """Until the element's textContent is exactly `text` (polled on animation frames)."""
    page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent === text",
        arg=[selector, text],
        timeout=timeout * 1000,
    )


def wait_console(page: Page, log: PageLog, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in log.console):
        assert time.monotonic() < deadline, f"no console line {text!r}: {log.console}"
        page.wait_for_timeout(25)


def wait_socket(page: Page, log: PageLog, path: str, timeout: float = 30.0) -> None:
    """Until the page opened a WebSocket to `path` (Metro's HMR client says nothing on the
    console when it connects, unlike Vite's)."""
    deadline = time.monotonic() + timeout
    while not any(urlsplit(url).path == path for url in log.sockets):
        assert time.monotonic() < deadline, f"no socket to {path}: {log.sockets}"
        page.wait_for_timeout(20)


def open_preview(page: Page, log: PageLog, session: Session, title: str) -> None:
    """Load the session's previewUrl; wait until it shows `title` and Vite's HMR client is
    connected (an edit sent before that could land between the load and the socket)."""
    response = page.goto(session.preview_url)
    assert response is not None and response.ok, response and response.status
    wait_text(page, "#title", title)
    wait_console(page, log, "[vite] connected.")
    # The token in the URL became an HttpOnly cookie of the preview origin.
    assert "token=" not in page.url
    assert urlsplit(page.url).netloc == session.preview_host


def assert_hmr_through_proxy(log: PageLog, session: Session) -> None:
    """Every socket the page opened was on the preview origin (the orchestrator's proxy), and
    Vite never fell back to a direct connection to the machine's dev server."""
    assert log.sockets, "the page opened no WebSocket"
    assert {urlsplit(url).netloc for url in log.sockets} == {session.preview_host}, log.sockets
    refused = [line for line in log.console if "fallback" in line or "403" in line]
    assert not refused, refused

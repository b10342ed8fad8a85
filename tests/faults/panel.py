"""The editor's page for the fault tests: the docs' `<preview-panel>` example served from
another site, opened in Chromium and waited on until its preview's HMR socket is up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from tests.e2e.sites import static_site
from tests.e2e.stack import Stack
from tests.e2e.test_panel import PANEL_PAGE, wait_state


@contextlib.contextmanager
def panel_site(root: Path, stack: Stack, api: str, port: int) -> Iterator[str]:
    """Serves the panel page, talking to `api`, on 127.0.0.1:`port`; yields the page's URL."""
    site = root / "site"
    site.mkdir()
    (site / "panel.html").write_text(
        PANEL_PAGE.replace("API", api)
        .replace("PROJECT", stack.project_id)
        .replace("TOKEN", stack.admin_token)
    )
    with static_site(site, port) as origin:
        yield f"{origin}/panel.html"


def open_panel(page: Page, url: str) -> None:
    """Until the panel is ready and its preview's HMR socket is up: an edit applied before that
    never reaches the page (docs/embedding.md, "Known limits")."""
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.goto(url)
    wait_state(page, "ready")
    deadline = time.monotonic() + 30
    while "[vite] connected." not in logged:
        assert time.monotonic() < deadline, logged
        page.wait_for_timeout(25)

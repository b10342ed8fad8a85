"""Browser tests of the whole stack: `preview-orchestrator dev` (real Postgres and Redis, the
local provider running the sandbox agent and Vite) driven from an editor socket, observed in
Chromium. One stack and one browser serve the package; each test leases its own session.

The stack's Redis database is claimed for the run (tests/redis_claim.py), or E2E_REDIS_URL names
one the suite may flush;
TEST_POSTGRES_URL the server where it creates (and drops) its database.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.conftest import free_port
from tests.e2e.browser import PageLog, chromium
from tests.e2e.stack import Session, Stack, running_stack
from tests.redis_claim import redis_url

REDIS_URL = redis_url("E2E_REDIS_URL", "e2e")


@pytest.fixture(scope="package")
def editor_site_port() -> int:
    """Where tests serve an editor's page on another site (127.0.0.1): an allowed origin."""
    return free_port()


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory, editor_site_port: int) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("e2e"),
        redis_url=REDIS_URL,
        extra_env={"PREVIEW_ALLOWED_ORIGINS": f"http://127.0.0.1:{editor_site_port}"},
    ) as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: no cookie of another session's origin."""
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def page_log(page: Page) -> PageLog:
    return PageLog(page)


@pytest.fixture
def session(stack: Stack) -> Iterator[Session]:
    """A leased session, ended after the test (its machine is recycled)."""
    stack.wait_ready_machines(1)
    leased = stack.lease()
    try:
        yield leased
    finally:
        stack.end(leased)

"""The operator dashboard at /admin in Chromium, against the real app (a uvicorn server in this
process, `dev` mode for the demo admin) on real Postgres and Redis: it shows what the API
changed, sets a pool's bounds (the stored bounds change), shows the API's error for bad bounds,
works from the keyboard alone, refuses a token that is not an operator's, passes axe, and
keeps its screenshot in docs/screenshots/ current.

These tests need no preview machine: the pool's ready machines are registered in Redis the way
the lease path sees them (tests.conftest.fill_pool), its history is written by the sampler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.sync_api import Browser, Page, expect

from app.settings import Settings, load_settings
from pool.core.pool_history import PoolSample
from pool.services.pool_history import sample_pools
from pool.store.inventory import Inventory, PoolKey
from pool.store.pool_history import PoolHistory
from tests.conftest import User, claimed_redis_url, fill_pool, make_user
from tests.integration.live import live_server

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshots" / "admin-dashboard.png"
POOL = PoolKey("react-web", "local")
ROW = f'#pools tr[data-pool="{POOL.template}/{POOL.region}"]'
# The pools table's columns (index of the cell in a row).
READY, LEASED, MIN, MAX = 2, 3, 8, 9


def _off_the_browser_thread(work: Callable[[], object]) -> None:
    """Run `work` (which runs its own event loop) in a thread of its own: Playwright's sync
    API keeps an event loop running in the test's thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        executor.submit(work).result()


def _fill_pool(count: int) -> None:
    _off_the_browser_thread(lambda: fill_pool(count))


@pytest.fixture
def dev_settings(settings: Settings) -> Settings:
    return load_settings(**{**settings.model_dump(), "preview_dev_mode": True})


@pytest.fixture
def base_url(dev_settings: Settings) -> Iterator[str]:
    _fill_pool(2)
    with live_server(dev_settings) as address:
        yield f"http://{address}"


@pytest.fixture
def admin(dev_settings: Settings) -> User:
    return make_user(dev_settings.database_url or "", admin=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def _stored_bounds(base_url: str, admin: User) -> tuple[int, int]:
    answer = httpx.get(f"{base_url}/api/admin/pool", headers=admin.headers)
    answer.raise_for_status()
    [row] = [p for p in answer.json()["pools"] if (p["template"], p["region"]) == POOL_NAMES]
    return row["min"], row["max"]


POOL_NAMES = (POOL.template, POOL.region)


def _cell(page: Page, column: int) -> Any:
    return page.locator(ROW).locator("th, td").nth(column)


def _sign_in(page: Page, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/admin")
    page.get_by_label("Admin access token").fill(token)
    page.get_by_role("button", name="Sign in", exact=True).click()


def _record_history() -> None:
    """An hour of samples as the worker's sampler would have left them (a pool growing, then
    serving leases), and one real sample of the pool as it is now."""

    async def record() -> None:
        client = aioredis.Redis.from_url(claimed_redis_url(), decode_responses=True)
        try:
            history = PoolHistory(client)
            now = time.time()
            past = [
                PoolSample(
                    at=now - 3600 + i * 60,
                    template=POOL.template,
                    region=POOL.region,
                    hot=min(i // 6, 4),
                    suspended=0,
                    stopped=0,
                    leased=(i // 10) % 3,
                    booting=1 if i % 12 == 0 else 0,
                    hits=i * 3,
                    misses=i // 4,
                )
                for i in range(59)
            ]
            await history.record(past, now)
            await sample_pools(Inventory(client), history, [POOL], now)
        finally:
            await client.aclose()

    _off_the_browser_thread(lambda: asyncio.run(record()))


def test_the_dashboard_shows_a_pool_change_made_through_the_api(
    page: Page, base_url: str, admin: User
) -> None:
    _sign_in(page, base_url, admin.token)
    expect(page.locator("#status")).to_have_text("Signed in with the pasted token.")
    expect(_cell(page, READY)).to_have_text("2")
    # The token is kept in this tab's sessionStorage, never in the address.
    assert page.evaluate("Object.values(sessionStorage)") == [admin.token]
    assert "token" not in page.url and admin.token not in page.url

    changed = httpx.put(
        f"{base_url}/api/admin/pool/react-web/local",
        json={"min": 1, "max": 7},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    _fill_pool(1)
    page.get_by_role("button", name="Refresh now").click()
    expect(_cell(page, MAX)).to_have_text("7")
    expect(_cell(page, MIN)).to_have_text("1")
    expect(_cell(page, READY)).to_have_text("3")

    # A reload signs in again from sessionStorage.
    page.reload()
    expect(_cell(page, MAX)).to_have_text("7")


def test_bounds_set_from_the_page_are_stored_and_bad_ones_show_the_api_error(
    page: Page, base_url: str, admin: User
) -> None:
    _sign_in(page, base_url, admin.token)
    expect(_cell(page, READY)).to_have_text("2")
    page.get_by_label("Pool", exact=True).select_option(f"{POOL.template}/{POOL.region}")
    page.get_by_label("Min (hot)").fill("2")
    page.get_by_label("Max (hot)").fill("5")
    page.get_by_role("button", name="Save bounds").click()
    expect(page.locator("#status")).to_have_text(
        "Saved react-web/local: min 2, max 5. A resize is queued."
    )
    assert _stored_bounds(base_url, admin) == (2, 5)
    expect(_cell(page, MAX)).to_have_text("5")

    # min above max: the API refuses it, the page says why, nothing is stored.
    page.get_by_label("Min (hot)").fill("9")
    page.get_by_label("Max (hot)").fill("3")
    page.get_by_role("button", name="Save bounds").click()
    error = page.locator("#bounds-error")
    expect(error).to_contain_text("Not saved:")
    expect(error).to_contain_text("min")
    assert _stored_bounds(base_url, admin) == (2, 5)

    # A negative bound: the API's own validation message, shown as it is.
    page.get_by_label("Min (hot)").fill("-1")
    page.get_by_label("Max (hot)").fill("3")
    page.get_by_role("button", name="Save bounds").click()
    expect(error).to_contain_text("greater than or equal to 0")
    assert _stored_bounds(base_url, admin) == (2, 5)


def _tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement?.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with Tab")


def test_the_dashboard_works_with_the_keyboard_alone(
    page: Page, base_url: str, admin: User
) -> None:
    page.goto(f"{base_url}/admin")
    _tab_to(page, "token")
    page.keyboard.type(admin.token)
    page.keyboard.press("Enter")
    expect(_cell(page, READY)).to_have_text("2")

    # The pools are sorted: react-native-web/local, then react-web/local.
    _tab_to(page, "bounds-pool")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.value") == "react-web/local"
    expect(page.get_by_label("Max (hot)")).to_have_value("10")  # the pool's bounds, filled in
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "bounds-min"
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("3")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "bounds-max"
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("6")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(
        "Saved react-web/local: min 3, max 6. A resize is queued."
    )
    assert _stored_bounds(base_url, admin) == (3, 6)
    # Focus is visible: the focused field draws an outline.
    _tab_to(page, "search-q")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def test_a_token_that_is_not_an_operators_is_refused(
    page: Page, base_url: str, dev_settings: Settings
) -> None:
    user = make_user(dev_settings.database_url or "")
    _sign_in(page, base_url, user.token)
    expect(page.locator("#alert")).to_contain_text("This token is not an operator's")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    _sign_in(page, base_url, "not-a-token")
    expect(page.locator("#alert")).to_contain_text("The token was refused")
    expect(page.locator("#dashboard")).to_be_hidden()


def test_the_demo_admin_the_history_and_a_timeline_are_accessible_and_the_screenshot_current(
    page: Page, base_url: str, admin: User
) -> None:
    leased = httpx.post(
        f"{base_url}/api/preview/sessions",
        json={"projectId": str(admin.project_id)},
        headers=admin.headers,
    )
    assert leased.status_code == 201, leased.text
    _record_history()

    page.goto(f"{base_url}/admin")
    page.get_by_role("button", name="Sign in as the demo admin").click()
    expect(page.locator("#status")).to_have_text("Signed in as the demo admin.")
    expect(_cell(page, LEASED)).to_have_text("1")
    chart = page.get_by_role("img", name="react-web/local: machines")
    expect(chart).to_have_attribute("aria-label", _starts_with("react-web/local: machines."))
    assert page.locator("#charts polyline").count() >= 3
    expect(page.locator("#alerts")).to_contain_text("No pool is failing to create machines.")

    page.get_by_label("Session, user or project id, or a user's email").fill(str(admin.project_id))
    page.get_by_role("button", name="Search").click()
    session_id = leased.json()["id"]
    page.get_by_role("button", name=f"Open timeline of session {session_id}").click()
    expect(page.locator("#timeline-heading")).to_have_text(f"Timeline of session {session_id}")
    timeline = page.locator("#timeline-body")
    expect(timeline).to_contain_text("Stages in order")
    expect(timeline.locator("tbody th").first).to_have_text("requested")
    page.wait_for_function("document.activeElement?.id === 'timeline'")

    page.add_script_tag(url=f"{base_url}/ui/vendor/axe-core/axe.min.js")
    violations = page.evaluate(
        """async () => {
            const r = await axe.run(document);
            return r.violations.map((v) => ({id: v.id, impact: v.impact,
                nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 3)}));
        }"""
    )
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, json.dumps(serious, indent=1)

    page.evaluate("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def _starts_with(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix))

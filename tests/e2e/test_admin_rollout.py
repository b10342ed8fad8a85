"""The /admin page's "Rollout" and "Flags" sections in Chromium, against the real app (a uvicorn
server in this process, real Postgres and Redis): the A/B report's bar chart shows both arms'
figures with their confidence-interval whiskers, and the kill switch flipped from the page is
stored, audited with the operator's id, and shown back; a bad percentage shows the API's error
and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.settings import Settings, load_settings
from tests.conftest import User, make_user
from tests.integration.live import live_server
from tests.integration.test_rollout_report import insert_known_arms


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    with live_server(load_settings(**settings.model_dump())) as address:
        yield f"http://{address}"


@pytest.fixture
def admin(settings: Settings, base_url: str) -> User:
    insert_known_arms(settings.database_url or "")
    admin = make_user(settings.database_url or "", admin=True)
    # The flags outlive each test's clean stores: start from the rollout's beginning.
    reset = httpx.put(
        f"{base_url}/api/admin/flags/global",
        json={"killSwitch": False, "percentage": 0},
        headers=admin.headers,
    )
    assert reset.status_code == 200, reset.text
    return admin


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in(page: Page, base_url: str, admin: User) -> None:
    page.goto(f"{base_url}/admin")
    page.get_by_label("Admin access token").fill(admin.token)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#status")).to_have_text("Signed in with the pasted token.")


def _flags(base_url: str, admin: User) -> dict[str, object]:
    answer = httpx.get(f"{base_url}/api/admin/flags", headers=admin.headers)
    answer.raise_for_status()
    rollout: dict[str, object] = answer.json()["rollout"]
    return rollout


def _changes_since(base_url: str, admin: User, last: int) -> list[dict[str, object]]:
    answer = httpx.get(f"{base_url}/api/admin/flags/audit", headers=admin.headers)
    answer.raise_for_status()
    return [c for c in answer.json()["changes"] if c["id"] > last]


def _last_change(base_url: str, admin: User) -> int:
    changes = _changes_since(base_url, admin, 0)
    return max((int(str(c["id"])) for c in changes), default=0)


def test_the_rollout_chart_shows_both_arms_with_their_intervals(
    page: Page, base_url: str, admin: User
) -> None:
    _sign_in(page, base_url, admin)
    expect(page.locator("#rollout-summary")).to_contain_text("new system 6, Appetize 5")
    first = page.locator('figure[data-metric="timeToFirstPreview"]')
    chart = first.get_by_role("img")
    # The figures of tests/integration/test_rollout_report.py, in words for screen readers.
    expect(chart).to_have_attribute(
        "aria-label",
        "Time to first preview (median). New system: 1,200 ms, 95% CI 800 ms to 3,000 ms, "
        "5 sessions; Appetize: 7,200 ms, 95% CI 6,800 ms to 9,000 ms, 5 sessions.",
    )
    assert first.locator("rect.bar").count() == 2
    assert first.locator("g.whisker").count() == 2
    # The new system's bar is shorter (faster), drawn to scale against Appetize's.
    widths = [float(w) for w in first.locator("rect.bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('width'))")]  # fmt: skip
    assert widths[0] / widths[1] == pytest.approx(1200 / 7200, rel=0.01)
    expect(first.locator(".verdict")).to_contain_text("significant (mann-whitney-u exact)")
    expect(page.locator('figure[data-metric="editToVisible"] .verdict')).to_contain_text(
        "not significant"
    )
    expect(page.locator('figure[data-metric="fallbackRate"] .verdict')).to_contain_text(
        "Not compared"
    )
    expect(page.locator("#rollout table")).to_contain_text("2 of 7")  # new: fallbacks

    # A wider window takes in the sessions ten days old.
    page.get_by_label("Sessions of the").select_option("2592000")
    expect(page.locator("#rollout-summary")).to_contain_text("new system 7, Appetize 6")


def test_the_kill_switch_flipped_from_the_page_is_stored_audited_and_shown(
    page: Page, base_url: str, admin: User
) -> None:
    assert _flags(base_url, admin)["killSwitch"] is False
    last = _last_change(base_url, admin)
    _sign_in(page, base_url, admin)
    expect(page.locator("#flags-state")).to_contain_text("Kill switch off. 0% of users")

    page.get_by_role("button", name="Turn the kill switch on").click()
    expect(page.locator("#status")).to_contain_text(
        "Kill switch on: every editor is sent to Appetize"
    )
    assert _flags(base_url, admin)["killSwitch"] is True
    [change] = _changes_since(base_url, admin, last)
    assert (change["flag"], change["old"], change["new"]) == ("killSwitch", False, True)
    assert change["actorId"] == str(admin.id)
    expect(page.locator("#flags-state")).to_contain_text("Kill switch ON")
    newest = page.locator("#flags-audit tbody tr").first
    expect(newest).to_contain_text("killSwitch")
    expect(newest).to_contain_text("true")

    # And back off: a second audited change.
    page.get_by_role("button", name="Turn the kill switch off").click()
    expect(page.locator("#flags-state")).to_contain_text("Kill switch off.")
    assert _flags(base_url, admin)["killSwitch"] is False
    assert [(c["old"], c["new"]) for c in _changes_since(base_url, admin, last)] == [
        (True, False),
        (False, True),
    ]


def test_the_percentage_is_saved_and_a_bad_one_shows_the_api_error(
    page: Page, base_url: str, admin: User
) -> None:
    last = _last_change(base_url, admin)
    _sign_in(page, base_url, admin)
    field = page.get_by_label("Share of users on the new system (%)")
    field.fill("5")
    page.get_by_role("button", name="Save percentage").click()
    expect(page.locator("#status")).to_have_text("Saved: 5% of users on the new system.")
    assert _flags(base_url, admin)["percentage"] == 5

    field.fill("250")
    page.get_by_role("button", name="Save percentage").click()
    expect(page.locator("#flags-error")).to_contain_text("Not changed:")
    expect(page.locator("#flags-error")).to_contain_text("100")
    assert _flags(base_url, admin)["percentage"] == 5
    assert [c["flag"] for c in _changes_since(base_url, admin, last)] == ["percentage"]

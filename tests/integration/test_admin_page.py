"""The operator dashboard's files as shipped: `app/ui/admin/dist` is what `tsc` makes of its
`src` (a stale dist would ship old code), and `web` serves the page (in production too: it
holds no data, the admin API answers only operators) with its script and style sheet, never
its sources, and refuses to be framed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from app.ui_assets import UI_DIR
from tests.tsc_dist import assert_dist_is_fresh

ADMIN = UI_DIR / "admin"


def test_dist_is_what_tsc_makes_of_src(tmp_path: Path) -> None:
    assert_dist_is_fresh("admin", tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    assert not settings.preview_dev_mode
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_the_page_its_script_and_its_style_are_served(client: TestClient) -> None:
    page = client.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-cache"
    assert 'src="/ui/admin/dist/dashboard.js"' in page.text
    script = client.get("/ui/admin/dist/dashboard.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert client.get("/ui/admin/admin.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/ui/admin/src/dashboard.ts",
        "/ui/admin/tsconfig.json",
        "/ui/admin/index.html",
        "/ui/admin/%2e%2e/client/dist/panel.js",
        "/ui/admin/%2e%2e/%2e%2e/settings.py",
        "/ui/admin/dist/missing.js",
        "/ui/admin/.hidden.js",
    ],
)
def test_nothing_else_is_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404, path

"""The browser client as shipped: `app/ui/client/dist` is what `tsc` makes of `src` (the
service serves dist with no build step, so a stale dist would ship old code), and `web` serves
the client, the demo and the lockfile's runtime packages, and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings, load_settings
from app.ui_assets import UI_DIR, runtime_packages
from tests.tsc_dist import assert_dist_is_fresh

CLIENT = UI_DIR / "client"


def test_dist_is_what_tsc_makes_of_src(tmp_path: Path) -> None:
    assert_dist_is_fresh("client", tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    dev = load_settings(**{**settings.model_dump(), "preview_dev_mode": True})
    with TestClient(create_app(dev)) as test_client:
        yield test_client


def test_the_client_the_demo_and_runtime_packages_are_served(client: TestClient) -> None:
    panel = client.get("/ui/client/panel.js")
    assert panel.status_code == 200
    assert panel.headers["content-type"].startswith("text/javascript")
    assert panel.headers["access-control-allow-origin"] == "*"
    assert client.get("/ui/client/index.d.ts").status_code == 200
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert client.get("/ui/demo/demo.js").status_code == 200
    assert "uqr" in runtime_packages() and "typescript" not in runtime_packages()
    assert client.get("/ui/vendor/uqr/dist/index.mjs").status_code == 200
    assert client.get("/ui/vendor/@codemirror/state/dist/index.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/ui/vendor/typescript/package.json",  # a dev tool, not a runtime package
        "/ui/vendor/uqr/../typescript/package.json",
        "/ui/vendor/uqr/%2e%2e/%2e%2e/package-lock.json",
        "/ui/client/../../settings.py",
        "/ui/client/%2e%2e/src/panel.ts",
        "/ui/client/.hidden",
        "/ui/client/missing.js",
        "/ui/demo/../../cli.py",
        "/ui/vendor/@codemirror",
        "/ui/vendor/",
    ],
)
def test_nothing_else_is_served(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404, (path, answer.status_code)


def test_the_demo_is_dev_only(settings: Settings) -> None:
    with TestClient(create_app(settings)) as plain:
        assert plain.get("/").status_code == 404
        assert plain.get("/ui/client/panel.js").status_code == 200

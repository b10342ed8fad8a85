"""The share route for `expo` sessions (issue 13): `expoGoUrl`, the share link as Expo Go opens
it, and `appetizeUrl`, an Appetize embed of the operator's Expo Go build launching it; both null
for other templates, and `appetizeUrl` null without a key for the session's platform. The
exchange those links go through is tested in tests/security/test_device_host.py."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.session_tokens import TokenScope, verify_session_token
from app.settings import Settings, load_settings
from tests.conftest import TOKEN_SECRET, User, fill_pool, make_user

EMBED = "https://appetize.example/embed/"


@pytest.fixture
def expo_settings(settings: Settings) -> Settings:
    return load_settings(
        **{
            **settings.model_dump(),
            "preview_templates": "react-web,expo",
            "preview_appetize_embed_url": EMBED,
            "preview_appetize_expo_go_ios_key": "expoGoIos1",
            "preview_appetize_expo_go_android_key": "expoGoAndroid1",
        }
    )


def _share(settings: Settings, template: str, **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Lease a session of `template` (a machine registered for it) and share it."""
    fill_pool(1, template)
    user: User = make_user(settings.database_url or "")
    with TestClient(create_app(settings)) as client:
        leased = client.post(
            "/api/preview/sessions",
            json={"projectId": str(user.project_id), "template": template, **body},
            headers=user.headers,
        )
        assert leased.status_code == 201, leased.text
        session: dict[str, Any] = leased.json()
        shared = client.post(f"/api/preview/sessions/{session['id']}/share", headers=user.headers)
        assert shared.status_code == 200, shared.text
        return session, shared.json()


@pytest.mark.parametrize(
    ("device_type", "key"), [("ios", "expoGoIos1"), ("android", "expoGoAndroid1")]
)
def test_an_expo_session_is_shared_for_expo_go_and_appetize(
    expo_settings: Settings, device_type: str, key: str
) -> None:
    session, shared = _share(expo_settings, "expo", deviceType=device_type)
    assert set(shared) == {"url", "expiresAt", "expoGoUrl", "appetizeUrl"}
    url, expo_go = shared["url"], shared["expoGoUrl"]
    assert url.startswith(session["previewOrigin"] + "/?token=")
    # The same link, the same token, in the scheme Expo Go opens (exp:// is http://).
    assert expo_go == "exp://" + url.removeprefix("http://")
    token = url.split("token=", 1)[1]
    grant = verify_session_token(
        TOKEN_SECRET.encode(), token, uuid.UUID(session["id"]), time.time(), frozenset(TokenScope)
    )
    assert grant.scope is TokenScope.SHARE

    appetize = urlsplit(shared["appetizeUrl"])
    assert f"{appetize.scheme}://{appetize.netloc}{appetize.path}" == EMBED + key
    assert parse_qs(appetize.query) == {"launchUrl": [expo_go], "autoplay": ["true"]}


def test_an_expo_session_under_a_preview_domain_is_shared_as_exps(
    expo_settings: Settings,
) -> None:
    configured = load_settings(
        **{**expo_settings.model_dump(), "preview_domain": "previews.example.test"}
    )
    session, shared = _share(configured, "expo", deviceType="ios")
    assert shared["url"].startswith(f"https://{session['id']}.previews.example.test/?token=")
    assert shared["expoGoUrl"] == "exps://" + shared["url"].removeprefix("https://")
    assert parse_qs(urlsplit(shared["appetizeUrl"]).query)["launchUrl"] == [shared["expoGoUrl"]]


def test_a_web_expo_session_has_no_platform_for_appetize(expo_settings: Settings) -> None:
    _, shared = _share(expo_settings, "expo")  # deviceType defaults to web
    assert shared["expoGoUrl"].startswith("exp://")
    assert shared["appetizeUrl"] is None


@pytest.fixture
def without_keys(settings: Settings) -> Settings:
    return load_settings(**{**settings.model_dump(), "preview_templates": "react-web,expo"})


def test_without_an_expo_go_build_on_appetize_there_is_no_appetize_url(
    without_keys: Settings,
) -> None:
    _, shared = _share(without_keys, "expo", deviceType="android")
    assert shared["expoGoUrl"].startswith("exp://")
    assert shared["appetizeUrl"] is None


def test_other_templates_have_no_expo_go_links(expo_settings: Settings) -> None:
    _, shared = _share(expo_settings, "react-web", deviceType="ios")
    assert shared["url"].startswith("http://")
    assert shared["expoGoUrl"] is None and shared["appetizeUrl"] is None

"""Expo Go links (app/expo_go.py) and the device host's name (app/preview_proxy.py): pure
pieces, with tables. The exchange and the proxying run against a server in
tests/integration/test_expo_go_access.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from app.expo_go import appetize_url, expo_go_url
from app.preview_proxy import device_host, preview_host_pattern
from app.settings import load_settings

SESSION = "0b5a6c1e-9f7d-4c3a-8e21-5d6f7a8b9c0d"
CREDENTIAL = "ab3tlfaaqhecdhefammxc3wu"


@pytest.mark.parametrize(
    ("share", "expo_go"),
    [
        (
            f"http://{SESSION}.preview.localhost:8000/?token=a.b",
            f"exp://{SESSION}.preview.localhost:8000/?token=a.b",
        ),
        (
            f"https://{SESSION}.previews.example/?token=a.b",
            f"exps://{SESSION}.previews.example/?token=a.b",
        ),
    ],
)
def test_expo_go_opens_the_share_link_with_its_own_scheme(share: str, expo_go: str) -> None:
    assert expo_go_url(share) == expo_go


@pytest.mark.parametrize("bad", ["ftp://x/", "exp://x/", "no scheme", ""])
def test_only_http_links_have_an_expo_go_form(bad: str) -> None:
    with pytest.raises(ValueError):
        expo_go_url(bad)


LAUNCH = f"exps://{SESSION}.previews.example/?token=a.b_c-d"


@pytest.mark.parametrize(
    ("device_type", "ios", "android", "key"),
    [
        ("ios", "iosKey1", "androidKey1", "iosKey1"),
        ("android", "iosKey1", "androidKey1", "androidKey1"),
        ("android", "iosKey1", None, None),  # no Expo Go build for that platform
        ("ios", None, None, None),
        ("web", "iosKey1", "androidKey1", None),  # a web session names no platform
    ],
)
def test_the_appetize_embed_launches_expo_go_of_the_sessions_platform(
    device_type: str, ios: str | None, android: str | None, key: str | None
) -> None:
    settings = load_settings(
        preview_appetize_embed_url="https://appetize.example/embed/",
        preview_appetize_expo_go_ios_key=ios,
        preview_appetize_expo_go_android_key=android,
    )
    url = appetize_url(settings, device_type, LAUNCH)
    if key is None:
        assert url is None
        return
    assert url is not None
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"https://appetize.example/embed/{key}"
    assert parse_qs(parts.query) == {"launchUrl": [LAUNCH], "autoplay": ["true"]}
    # URL-encoded whole, as Appetize documents it (`launchUrl=https%3A%2F%2F…`).
    assert "launchUrl=exps%3A%2F%2F" in parts.query and "%3Ftoken%3D" in parts.query


@pytest.mark.parametrize("key", ["a/b", "a?b", "", "x" * 101, "a b"])
def test_an_appetize_key_is_one_plain_path_segment(key: str) -> None:
    with pytest.raises(ValueError):
        load_settings(preview_appetize_expo_go_ios_key=key)


@pytest.mark.parametrize(
    ("host", "session", "credential"),
    [
        (f"{SESSION}.preview.localhost:8000", SESSION, None),
        (f"{SESSION}--{CREDENTIAL}.preview.localhost:8000", SESSION, CREDENTIAL),
        (f"{SESSION}--{CREDENTIAL}.preview.localhost", SESSION, CREDENTIAL),
        # Anything after `--` is a credential to check (and refuse), not a host for the API.
        (f"{SESSION}--.preview.localhost", SESSION, ""),
        (f"{SESSION}--not-one.preview.localhost", SESSION, "not-one"),
        (f"{SESSION}-{CREDENTIAL}.preview.localhost", None, None),
        (f"{SESSION}--{CREDENTIAL}.evil.example", None, None),
        (f"x.{SESSION}--{CREDENTIAL}.preview.localhost", None, None),
    ],
)
def test_the_router_tells_a_device_host_from_a_sessions_host(
    host: str, session: str | None, credential: str | None
) -> None:
    match = preview_host_pattern(None).match(host)
    if session is None:
        assert match is None
        return
    assert match is not None
    assert (match["session"], match["credential"]) == (session, credential)


def test_a_device_host_keeps_the_domain_and_port_it_was_asked_on() -> None:
    pattern = preview_host_pattern("previews.example")
    for host in (f"{SESSION}.previews.example", f"{SESSION}.previews.example:8443"):
        device = device_host(host, CREDENTIAL)
        assert device == host.replace(SESSION, f"{SESSION}--{CREDENTIAL}")
        match = pattern.match(device)
        assert match is not None and match["credential"] == CREDENTIAL

"""A phone's way into a preview (issue 13): Expo Go presents a share link's token once, with
`expo-platform`, and is sent to the session's device host, where every request (HTTP and the
HMR socket) is served with no cookie and no token. Refusals: another session's or an expired
token at the exchange; a bad, expired, malformed or other session's credential on the device
host; a session that ended.

Like test_preview_proxy, the app runs as `web` runs it (uvicorn) in front of a recording
machine (tests/security/machine.py), so the tests see what reaches the machine. The machine is
a Vite one: the device host is the same door whatever the template (the Metro side has its own
tests, tests/integration/test_expo_template.py and tests/e2e/test_expo.py).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from app.server import create_app, proxy_options, websocket_options
from app.session_tokens import (
    TokenScope,
    mint_device_credential,
    mint_session_token,
    verify_device_credential,
)
from app.settings import Settings, load_settings
from tests.conftest import TOKEN_SECRET, make_user
from tests.security.machine import RecordingMachine, recording_machine, serve

SECRET = TOKEN_SECRET.encode()
IOS = {"expo-platform": "ios", "accept": "application/expo+json,application/json"}


@dataclass
class Phone:
    web: str  # where the web listens, 127.0.0.1:port
    session_id: uuid.UUID
    origin_host: str  # {session}.preview.localhost:8000
    machine: RecordingMachine
    http: httpx.Client
    user_headers: dict[str, str]

    def get(self, host: str, target: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """GET `target` from `host` as a phone would (no cookie ever kept)."""
        self.http.cookies.clear()
        return self.http.get(
            f"http://{self.web}{target}", headers={"host": host, **(headers or {})}
        )

    def token(
        self, scope: TokenScope, expires_in: int = 300, session: uuid.UUID | None = None
    ) -> str:
        expires = int(time.time()) + expires_in
        return mint_session_token(SECRET, session or self.session_id, expires, scope)

    def device_host(self, credential: str) -> str:
        return self.origin_host.replace(str(self.session_id), f"{self.session_id}--{credential}")

    def exchange(self, token: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.get(
            self.origin_host, f"/?token={token}&platform=ios", {**IOS, **(headers or {})}
        )

    def socket(self, host: str, origin: str | None) -> ClientConnection:
        """Metro's HMR socket as a phone opens it: to `host`, over the web's address."""
        address, port = self.web.split(":")
        return connect(
            f"ws://{host}/hot",
            sock=socket.create_connection((address, int(port)), timeout=10),
            origin=origin,  # type: ignore[arg-type]
            open_timeout=10,
        )


@pytest.fixture
def phone(settings: Settings) -> Iterator[Callable[..., Any]]:
    @contextmanager
    def start(**overrides: Any) -> Iterator[Phone]:
        configured = load_settings(**{**settings.model_dump(), **overrides})
        options = {**websocket_options(configured), **proxy_options(configured)}
        with (
            recording_machine() as machine,
            serve(create_app(configured), lifespan="on", **options) as web,
            httpx.Client(timeout=30, follow_redirects=False) as http,
        ):
            user = make_user(settings.database_url or "")
            leased = http.post(
                f"http://{web}/api/preview/sessions",
                json={"projectId": str(user.project_id)},
                headers=user.headers,
            )
            assert leased.status_code == 201, leased.text
            session = leased.json()
            origin_host = urlsplit(session["previewUrl"]).netloc
            yield Phone(web, uuid.UUID(session["id"]), origin_host, machine, http, user.headers)

    yield start


# --- the exchange ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", [TokenScope.SHARE, TokenScope.PREVIEW, TokenScope.EDITOR])
@pytest.mark.parametrize("platform", ["ios", "android"])
def test_expo_go_is_sent_to_the_device_host_same_path_no_token_no_cookie(
    phone: Callable[..., Any], scope: TokenScope, platform: str
) -> None:
    with phone() as p:
        answer = p.exchange(p.token(scope), {"expo-platform": platform})
        assert p.machine.requests == []  # answered here
    assert answer.status_code == 307
    assert "set-cookie" not in answer.headers
    assert answer.headers["cache-control"] == "no-store"
    location = urlsplit(answer.headers["location"])
    assert (location.scheme, location.path, location.query) == ("http", "/", "platform=ios")
    label, _, rest = location.netloc.partition(".")
    assert rest == p.origin_host.partition(".")[2]  # same domain, same port
    session, _, credential = label.partition("--")
    assert session == str(p.session_id) and len(label) <= 63
    expires = verify_device_credential(SECRET, credential, p.session_id, time.time())
    assert abs(expires - (time.time() + 12 * 3600)) < 60  # PREVIEW_DEVICE_HOST_TTL_SECONDS


def test_the_device_hosts_scheme_is_the_previews_own(phone: Callable[..., Any]) -> None:
    # Behind Fly's proxy the request arrives as http from a peer that is not trusted.
    with phone(preview_domain="previews.example.test", preview_device_host_ttl_seconds=600) as p:
        assert p.origin_host == f"{p.session_id}.previews.example.test"
        answer = p.exchange(p.token(TokenScope.SHARE))
    assert answer.status_code == 307
    location = urlsplit(answer.headers["location"])
    assert location.scheme == "https" and location.netloc.endswith(".previews.example.test")
    credential = location.netloc.partition(".")[0].partition("--")[2]
    expires = verify_device_credential(SECRET, credential, p.session_id, time.time())
    assert abs(expires - (time.time() + 600)) < 60


@pytest.mark.parametrize("platform", [None, "web", "IOS", ""])
def test_a_browser_keeps_the_cookie_path(phone: Callable[..., Any], platform: str | None) -> None:
    with phone() as p:
        headers = {"expo-platform": platform} if platform is not None else {}
        answer = p.get(p.origin_host, f"/?token={p.token(TokenScope.SHARE)}", headers)
    assert answer.status_code == 302
    assert answer.headers["location"] == "/"
    assert answer.headers["set-cookie"].startswith("preview_token=")


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda p: p.token(TokenScope.SHARE, expires_in=-1), id="expired share"),
        pytest.param(
            lambda p: p.token(TokenScope.SHARE, session=uuid.uuid4()), id="another session"
        ),
        pytest.param(lambda p: p.token(TokenScope.SHARE)[:-3] + "AAA", id="tampered"),
        pytest.param(
            lambda p: mint_device_credential(SECRET, p.session_id, int(time.time()) + 60),
            id="a device credential as a token",
        ),
    ],
)
def test_the_exchange_refuses_what_the_cookie_path_refuses(
    phone: Callable[..., Any], make_token: Callable[[Phone], str]
) -> None:
    with phone() as p:
        answer = p.exchange(make_token(p))
        assert p.machine.requests == []
    assert answer.status_code == 403
    assert "location" not in answer.headers and "set-cookie" not in answer.headers


# --- the device host ------------------------------------------------------------------------


def _device_host(p: Phone) -> str:
    """The device host, the way Expo Go learns it: from the exchange."""
    answer = p.exchange(p.token(TokenScope.SHARE))
    assert answer.status_code == 307, answer.text
    return urlsplit(answer.headers["location"]).netloc


def test_the_device_host_serves_every_request_without_cookie_or_token(
    phone: Callable[..., Any],
) -> None:
    with phone() as p:
        host = _device_host(p)
        manifest = p.get(host, "/?platform=ios", IOS)
        bundle = p.get(host, "/index.bundle?platform=ios&dev=true")
        symbolicate = p.http.post(
            f"http://{p.web}/symbolicate", headers={"host": host}, content=b'{"stack":[]}'
        )
        # DNS names are case-insensitive: so is the device host.
        shouted = p.get(host.upper(), "/assets/icon.png")
    assert [r.status_code for r in (manifest, bundle, symbolicate, shouted)] == [200] * 4
    seen = p.machine.requests
    assert [(s.method, s.target) for s in seen] == [
        ("GET", "/?platform=ios"),
        ("GET", "/index.bundle?platform=ios&dev=true"),
        ("POST", "/symbolicate"),
        ("GET", "/assets/icon.png"),
    ]
    assert seen[2].length == len(b'{"stack":[]}')
    for request in seen:
        assert "cookie" not in request.headers
    # The machine's front builds the manifest's URLs from the host the phone asked on: its
    # Host, as Fly's replay keeps it.
    assert seen[0].headers["host"] == seen[0].headers["x-forwarded-host"] == host
    assert seen[0].headers["expo-platform"] == "ios"


@pytest.mark.parametrize("origin", ["same", None])
def test_the_device_host_carries_the_hmr_socket_without_a_cookie(
    phone: Callable[..., Any], origin: str | None
) -> None:
    # React Native's WebSocket sends an Origin naming the socket's own host; a client may send
    # none. Either is this preview's own.
    with phone() as p:
        host = _device_host(p)
        with p.socket(host, f"http://{host}" if origin else None) as hmr:
            hmr.send('{"type":"register-entrypoints"}')
            assert hmr.recv(timeout=10) == '{"type":"register-entrypoints"}'
    (seen,) = p.machine.sockets
    assert "cookie" not in seen
    assert seen["host"] == host


def test_another_sites_page_cannot_open_the_device_hosts_socket(
    phone: Callable[..., Any],
) -> None:
    with phone() as p:
        host = _device_host(p)
        with pytest.raises(InvalidStatus) as refused:
            p.socket(host, "https://evil.example").close()
        assert refused.value.response.status_code == 403
        assert p.machine.sockets == []


def _flip_last(credential: str) -> str:
    return credential[:-1] + ("b" if credential[-1] == "a" else "a")


@pytest.mark.parametrize(
    "make_credential",
    [
        pytest.param(lambda p, good: _flip_last(good), id="tampered"),
        pytest.param(
            lambda p, good: mint_device_credential(SECRET, p.session_id, int(time.time()) - 1),
            id="expired",
        ),
        pytest.param(
            lambda p, good: mint_device_credential(SECRET, uuid.uuid4(), int(time.time()) + 600),
            id="another session's",
        ),
        pytest.param(
            lambda p, good: mint_device_credential(b"x" * 32, p.session_id, int(time.time()) + 600),
            id="another secret",
        ),
        pytest.param(lambda p, good: "", id="empty"),
        pytest.param(lambda p, good: good[:-1], id="short"),
        pytest.param(lambda p, good: good + "-" + good, id="long"),
        pytest.param(lambda p, good: p.token(TokenScope.PREVIEW).split(".")[0], id="a token"),
    ],
)
def test_a_bad_credential_is_refused_over_http_and_websocket(
    phone: Callable[..., Any], make_credential: Callable[[Phone, str], str]
) -> None:
    with phone() as p:
        good = mint_device_credential(SECRET, p.session_id, int(time.time()) + 600)
        host = p.device_host(make_credential(p, good).lower())
        answer = p.get(host, "/?platform=ios", IOS)
        with pytest.raises(InvalidStatus) as refused:
            p.socket(host, f"http://{host}").close()
        # A cookie of the session does not make a bad device host good.
        with_cookie = p.get(host, "/", {"cookie": f"preview_token={p.token(TokenScope.PREVIEW)}"})
        assert p.machine.requests == [] and p.machine.sockets == []
    assert answer.status_code == 403
    assert answer.text == "403: a valid preview token is required\n"
    assert refused.value.response.status_code == 403
    assert with_cookie.status_code == 403


def test_the_device_host_closes_with_its_session(phone: Callable[..., Any]) -> None:
    with phone() as p:
        host = _device_host(p)
        assert p.get(host, "/").status_code == 200
        ended = p.http.delete(
            f"http://{p.web}/api/preview/sessions/{p.session_id}", headers=p.user_headers
        )
        assert ended.status_code == 204
        time.sleep(2.1)  # past the router's 2 s cache of the session's machine
        answer = p.get(host, "/")
    assert answer.status_code == 503
    assert len(p.machine.requests) == 1


def test_the_plain_host_still_wants_its_cookie(phone: Callable[..., Any]) -> None:
    with phone() as p:
        _device_host(p)
        assert p.get(p.origin_host, "/", IOS).status_code == 401
        cookie = {"cookie": f"preview_token={p.token(TokenScope.PREVIEW)}"}
        assert p.get(p.origin_host, "/", cookie).status_code == 200

"""Findings on the preview origin (issue 9, item 11): the cookie's `Secure`, proxy headers
from peers that are no proxy of ours, `Origin` on the HMR socket, the token redirect, and paths
that once broke the proxy.

Each test runs the app the way `web` runs it (uvicorn with `app.server.proxy_options`) in front
of a recording machine (tests/security/machine.py), and talks to it over a raw socket where a
client library would refuse to send what an attacker sends.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.server import create_app, proxy_options, websocket_options
from app.settings import Settings, load_settings
from tests.security.machine import RecordingMachine, lease, recording_machine, serve


@dataclass
class Preview:
    host: str  # where the web listens, 127.0.0.1:port
    origin_host: str  # the preview origin's Host, {session}.preview.localhost:8000
    session: dict[str, Any]
    machine: RecordingMachine

    @property
    def cookie(self) -> str:
        return f"preview_token={self.session['token']}"

    def request(self, target: bytes, headers: dict[str, str] | None = None) -> Response:
        headers = {"connection": "close", **(headers or {})}
        lines = [b"GET " + target + b" HTTP/1.1", b"host: " + self.origin_host.encode()]
        lines += [f"{k}: {v}".encode() for k, v in headers.items()]
        return raw_request(self.host, b"\r\n".join([*lines, b"", b""]))


@dataclass
class Response:
    status: int | None  # None: the connection closed without an answer
    headers: dict[str, str]
    body: bytes


def raw_request(host: str, request: bytes) -> Response:
    address, port = host.split(":")
    received = b""
    with socket.create_connection((address, int(port)), timeout=10) as conn:
        conn.sendall(request)
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    if not head:
        return Response(None, {}, b"")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), headers, body)


@pytest.fixture
def preview(settings: Settings) -> Iterator[Callable[..., Any]]:
    """Start the web (settings overridden by keyword) and lease a session on a recording
    machine; a context manager yielding a Preview."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[Preview]:
        configured = load_settings(**{**settings.model_dump(), **overrides})
        options = {**websocket_options(configured), **proxy_options(configured)}
        with (
            recording_machine() as machine,
            serve(create_app(configured), lifespan="on", **options) as host,
        ):
            session = lease(f"http://{host}", settings.database_url or "")
            origin_host = urlsplit(session["previewUrl"]).netloc
            yield Preview(host, origin_host, session, machine)

    yield start


# --- 1. the cookie and proxy headers ----------------------------------------------------


def test_the_cookie_is_secure_when_a_preview_domain_is_set_whatever_the_scheme(
    preview: Callable[..., Any],
) -> None:
    # Behind Fly's proxy the request reaches uvicorn as plain http from a peer that is not
    # configured as trusted: the cookie must still be Secure.
    with preview(preview_domain="previews.example.test") as p:
        assert p.origin_host.endswith(".previews.example.test")
        answer = p.request(f"/?token={p.session['token']}".encode(), {"x-forwarded-proto": "http"})
    assert answer.status == 302
    attributes = [a.strip() for a in answer.headers["set-cookie"].split(";")]
    assert {"Secure", "HttpOnly", "SameSite=None", "Partitioned"} <= set(attributes)


SPOOFED = {
    "x-forwarded-for": "203.0.113.9",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "evil.example",
    "forwarded": "for=203.0.113.9;proto=https",
    "x-real-ip": "203.0.113.9",
    "fly-client-ip": "203.0.113.9",
    "fly-forwarded-proto": "https",
}


def test_proxy_headers_from_a_peer_that_is_no_configured_proxy_never_reach_the_machine(
    preview: Callable[..., Any],
) -> None:
    with preview() as p:  # PREVIEW_TRUSTED_PROXIES unset: no peer is a proxy of ours
        answer = p.request(b"/src/main.js", {"cookie": p.cookie, **SPOOFED})
    assert answer.status == 200
    (seen,) = p.machine.requests
    # What the machine hears about the hop is this hop's own account of it.
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"
    assert seen.headers["x-forwarded-proto"] == "http"
    assert seen.headers["x-forwarded-host"] == p.origin_host
    assert not {"forwarded", "x-real-ip", "fly-client-ip", "fly-forwarded-proto"} & set(
        seen.headers
    )


def test_proxy_headers_from_a_configured_proxy_are_honoured(
    preview: Callable[..., Any],
) -> None:
    with preview(preview_trusted_proxies="127.0.0.1") as p:
        answer = p.request(b"/src/main.js", {"cookie": p.cookie, **SPOOFED})
    assert answer.status == 200
    (seen,) = p.machine.requests
    assert seen.headers["x-forwarded-for"] == "203.0.113.9"
    assert seen.headers["x-forwarded-proto"] == "https"
    assert "fly-client-ip" not in seen.headers


# --- 2. Origin on the HMR socket --------------------------------------------------------


def _hmr_socket(p: Preview, origin: str | None) -> Any:
    """Vite's HMR client socket as a page would open it: to the preview origin's host (the
    connection itself goes to the web's address)."""
    address, port = p.host.split(":")
    return connect(
        f"ws://{p.origin_host}/?token=vite-hmr-token",
        sock=socket.create_connection((address, int(port)), timeout=10),
        additional_headers={"cookie": p.cookie},
        origin=origin,  # type: ignore[arg-type]
        subprotocols=["vite-hmr"],  # type: ignore[list-item]
        open_timeout=10,
    )


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://preview.localhost:8000"]
)
def test_another_sites_page_cannot_open_the_hmr_socket(
    preview: Callable[..., Any], origin: str
) -> None:
    with preview() as p:
        with pytest.raises(InvalidStatus) as refused:
            _hmr_socket(p, origin).close()
        assert refused.value.response.status_code == 403
        assert p.machine.sockets == []  # the dev server never saw it


def test_the_preview_pages_origin_reaches_the_dev_server(preview: Callable[..., Any]) -> None:
    with preview() as p:
        origin = f"http://{p.origin_host}"
        with _hmr_socket(p, origin) as hmr:
            hmr.send("ping")
            assert hmr.recv(timeout=10) == "ping"
    (seen,) = p.machine.sockets
    # Vite compares Origin with its allowed hosts and requires its token when one is present.
    assert seen["origin"] == origin
    assert "preview_token" not in seen.get("cookie", "")


# --- 3. the token redirect and hostile paths --------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        (b"//evil.example/x", "/evil.example/x"),
        (b"/\\evil.example/x", "/%5Cevil.example/x"),
        (b"/%2F%2Fevil.example/x", "/%2F%2Fevil.example/x"),
        (b"/a%2525b", "/a%2525b"),  # decoded once would be /a%25b, another file
        (b"/%FF", "/%FF"),  # not UTF-8: decoded once would be U+FFFD
        (b"/caf%C3%A9", "/caf%C3%A9"),
        (b"/a%0D%0ASet-Cookie:%20x=1", "/a%0D%0ASet-Cookie:%20x=1"),
    ],
)
def test_the_token_redirect_keeps_the_path_and_stays_on_the_preview_origin(
    preview: Callable[..., Any], path: bytes, location: str
) -> None:
    with preview() as p:
        token = p.session["token"].encode()
        answer = p.request(path + b"?a=1&token=" + token + b"&flag&b=%0D%0A")
    assert answer.status == 302
    assert answer.headers["location"] == location + "?a=1&flag&b=%0D%0A"
    origin = f"http://{p.origin_host}"
    assert urlsplit(urljoin(origin + "/", answer.headers["location"])).netloc == p.origin_host
    assert "x=1" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "path",
    [
        "/café".encode(),  # raw UTF-8 in the request line
        b"/a\rb",  # a bare CR
        b"/a%0D%0Ab",  # an encoded CRLF
        b"/%FF%FE",
        b"/x?q=" + "é".encode(),
    ],
)
@pytest.mark.parametrize("with_token", [True, False])
def test_a_hostile_path_gets_a_clear_answer(
    preview: Callable[..., Any], path: bytes, with_token: bool
) -> None:
    with preview() as p:
        if with_token:
            glue = b"&" if b"?" in path else b"?"
            answer = p.request(path + glue + b"token=" + p.session["token"].encode())
        else:
            answer = p.request(path, {"cookie": p.cookie})
    # A clear refusal, a redirect, or the machine's own answer: never a dropped connection or
    # a 500 of ours.
    assert answer.status is not None, "the connection was dropped without an answer"
    assert answer.status in (200, 302, 400, 404), answer


def test_a_hostile_path_on_the_hmr_socket_gets_a_clear_answer(
    preview: Callable[..., Any],
) -> None:
    with preview() as p:
        key = base64.b64encode(os.urandom(16)).decode()
        answer = p.request(
            b"/a%0D%0Ab",
            {
                "cookie": p.cookie,
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-version": "13",
                "sec-websocket-key": key,
                "origin": f"http://{p.origin_host}",
            },
        )
    assert answer.status is not None and 400 <= answer.status < 500

"""The browser's request as the preview machine gets it (app/preview_request.py): the pure
pieces, with tables. tests/security/test_preview_proxy.py sends the same cases to a server."""

from __future__ import annotations

from typing import Any

import pytest

from app.preview_request import redirect_target, same_origin, upstream_headers

HOST = "0b5a6c1e-9f7d-4c3a-8e21-5d6f7a8b9c0d.preview.localhost:8000"


def _scope(**fields: Any) -> dict[str, Any]:
    headers = [(k.encode(), v.encode()) for k, v in fields.pop("headers", {}).items()]
    return {"path": "", "query_string": b"", "headers": headers, **fields}


@pytest.mark.parametrize(
    ("raw_path", "query", "location"),
    [
        (b"/src/App.jsx", b"token=t", "/src/App.jsx"),
        (b"//evil.example/x", b"token=t", "/evil.example/x"),
        (b"///evil.example", b"token=t", "/evil.example"),
        (b"/\\evil.example", b"token=t", "/%5Cevil.example"),
        (b"/%2F%2Fx", b"token=t", "/%2F%2Fx"),
        (b"/a%2525b", b"token=t", "/a%2525b"),
        (b"/100%", b"token=t", "/100%25"),
        (b"/a b", b"token=t", "/a%20b"),
        (b"/x", b"a=1&token=t&flag&b=%0D%0A", "/x?a=1&flag&b=%0D%0A"),
        (b"/x", b"to%6Ben=t&a=1", "/x?a=1"),  # an encoded name is still `token`
        (b"/x", b"token=t&token=u", "/x"),
    ],
)
def test_redirect_target(raw_path: bytes, query: bytes, location: str) -> None:
    assert redirect_target(_scope(raw_path=raw_path, query_string=query), "token") == location


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser
        (f"http://{HOST}", True),
        (f"https://{HOST}", True),
        (f"HTTP://{HOST.upper()}", True),
        ("https://evil.example", False),
        ("null", False),
        (f"http://{HOST}.evil.example", False),
        (f"http://{HOST.removesuffix(':8000')}", False),  # another port is another origin
        (f"ftp://{HOST}", False),
    ],
)
def test_same_origin(origin: str | None, allowed: bool) -> None:
    headers = {"host": HOST, **({"origin": origin} if origin is not None else {})}
    assert same_origin(_scope(headers=headers)) is allowed


def test_upstream_headers_state_the_hop_and_drop_what_a_client_forged() -> None:
    scope = _scope(
        scheme="https",
        client=("198.51.100.7", 5555),
        headers={
            "host": HOST,
            "accept": "*/*",
            "cookie": "theme=dark; preview_token=secret",
            "x-forwarded-for": "203.0.113.9",
            "forwarded": "for=203.0.113.9",
            "fly-client-ip": "203.0.113.9",
            "connection": "keep-alive",
        },
    )
    headers = {k.decode(): v.decode() for k, v in upstream_headers(scope, "preview_token")}
    assert headers == {
        "accept": "*/*",
        "cookie": "theme=dark",
        "x-forwarded-proto": "https",
        "x-forwarded-for": "198.51.100.7",
        "x-forwarded-host": HOST,
    }

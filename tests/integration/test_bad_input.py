"""Bad input on every route gets a clear JSON error and changes nothing.

The caller is an admin who owns a real project and there are ready machines, so each of these
requests would succeed (and write) if its flaw were not caught.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.conftest import JWT_SECRET, User, fill_pool, make_user
from tests.integration.stores import (
    db_snapshot,
    emptied_stores_settings,
    ready_count,
    redis_snapshot,
)

SESSIONS = "/api/preview/sessions"
POOL_PUT = "/api/admin/pool/react-web/local"
PROJECT = "{project}"  # replaced by the caller's own project id
JSON = "application/json"


@dataclass
class Env:
    client: TestClient
    user: User
    database_url: str
    max_body: int


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One app for all the refusals: none of them may change anything, so they cannot disturb
    one another, and each compares its own before and after."""
    settings = emptied_stores_settings(database_url, tmp_path_factory.mktemp("bad") / "data")
    user = make_user(database_url, admin=True)
    fill_pool(3)
    with TestClient(create_app(settings)) as client:
        yield Env(client, user, database_url, settings.preview_max_body_bytes)


def _fill(value: Any, project: str) -> Any:
    """Put the caller's project id where a body (or a body in a list) says PROJECT; only at
    the top, so deep test values are not walked."""
    if isinstance(value, list):
        return [_fill(v, project) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        return {k: (project if v == PROJECT else v) for k, v in value.items()}
    return value


def _deep_options(depth: int) -> bytes:
    """A create body whose options nest `depth` objects (built as text: json.dumps would hit
    the test's own recursion limit)."""
    return b'{"projectId": "%s", "options": ' + b'{"a": ' * depth + b"{}" + b"}" * depth + b"}"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _refused(
    env: Env,
    method: str,
    url: str,
    *,
    content: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | None = None,
    status: int,
    code: str | None = None,
) -> httpx.Response:
    """Send, then check the error's status and shape and that the stores did not move."""
    ready_before = ready_count()
    assert ready_before > 0  # so a request that slipped through would have leased
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()

    sent = httpx.Headers(env.user.headers)
    sent.update(headers or {})  # case-insensitive: an override replaces, never duplicates
    # Annotated: starlette types TestClient against httpx2, which is not installed here.
    response: httpx.Response = env.client.request(method, url, content=content, headers=sent)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    assert body["message"]
    if code is not None:
        assert body["error"] == code, body
    assert ready_count() == ready_before
    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before
    return response


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- bodies -------------------------------------------------------------------------------

# (raw JSON text, or a value to serialize with the project filled in; expected error code)
CREATE_BODIES: dict[str, tuple[bytes | Any, str | None]] = {
    "malformed": (b'{"projectId": ', "malformed_json"),
    "trailing-garbage": (b'{"projectId": "x"} x', "malformed_json"),
    "empty": (b"", "malformed_json"),
    "invalid-utf8": (b'{"projectId": "\xff\xfe"}', "malformed_json"),
    "array": ([{"projectId": PROJECT}], "invalid_body"),
    "null": (None, "invalid_body"),
    "string": ("projectId", "invalid_body"),
    "number": (1, "invalid_body"),
    "project-int": ({"projectId": 123}, "invalid_body"),
    "project-huge-int": (b'{"projectId": 1' + b"0" * 5000 + b"}", "malformed_json"),
    "project-null": ({"projectId": None}, "invalid_body"),
    "project-object": ({"projectId": {"id": PROJECT}}, "invalid_body"),
    "device-int": ({"projectId": PROJECT, "deviceType": 5}, "invalid_body"),
    "device-unknown": ({"projectId": PROJECT, "deviceType": "windows"}, "invalid_body"),
    "unknown-field": ({"projectId": PROJECT, "machineId": "test-x"}, "invalid_body"),
    "snake-case": ({"project_id": PROJECT}, "invalid_body"),
    "missing-project": ({"deviceType": "web"}, "invalid_body"),
    "empty-object": ({}, "invalid_body"),
    "project-not-uuid": ({"projectId": "not-a-uuid"}, "invalid_body"),
    "project-sql": ({"projectId": "'; DROP TABLE preview_sessions; --"}, "invalid_body"),
    "project-sql-or": ({"projectId": "' OR '1'='1"}, "invalid_body"),
    "template-traversal": ({"projectId": PROJECT, "template": "../etc"}, "invalid_body"),
    "template-upper": ({"projectId": PROJECT, "template": "UPPER"}, "invalid_body"),
    "template-empty": ({"projectId": PROJECT, "template": ""}, "invalid_body"),
    "template-long": ({"projectId": PROJECT, "template": "a" * 41}, "invalid_body"),
    "template-unknown": ({"projectId": PROJECT, "template": "nope"}, "unknown_template"),
    "template-int": ({"projectId": PROJECT, "template": 1}, "invalid_body"),
    "region-traversal": ({"projectId": PROJECT, "region": "../../x"}, "invalid_body"),
    "region-newline": ({"projectId": PROJECT, "region": "local\n"}, "invalid_body"),
    # A well-formed name that is not configured: it must not make a pool appear.
    "region-unknown": ({"projectId": PROJECT, "region": "invented"}, "unknown_region"),
    "options-array": ({"projectId": PROJECT, "options": []}, "invalid_body"),
    "options-string": ({"projectId": PROJECT, "options": "x"}, "invalid_body"),
    "options-big": ({"projectId": PROJECT, "options": {"a": "x" * 5000}}, "invalid_body"),
    "options-deep-4k": (_deep_options(800), "invalid_body"),
    "options-deeper-than-parser": (
        b'{"projectId": "%s", "options": {"a": ' + b"[" * 20000 + b"]" * 20000 + b"}}",
        "malformed_json",
    ),
    # Within the parser's reach or beyond it, depending on the server's stack: 400 either way.
    "options-deep-990": (_deep_options(990), None),
    "options-1e400": (b'{"projectId": "%s", "options": {"a": 1e400}}', "invalid_body"),
    "options-minus-1e400": (b'{"projectId": "%s", "options": {"a": [-1e400]}}', "invalid_body"),
    "options-nan": (b'{"projectId": "%s", "options": {"a": NaN}}', "malformed_json"),
    "options-infinity": (b'{"projectId": "%s", "options": {"a": -Infinity}}', "malformed_json"),
    "options-nul-value": ({"projectId": PROJECT, "options": {"a": "x\u0000y"}}, "invalid_body"),
    "options-nul-key": ({"projectId": PROJECT, "options": {"\u0000": 1}}, "invalid_body"),
    "options-nul-nested": (
        {"projectId": PROJECT, "options": {"a": [{"b": ["\u0000"]}]}},
        "invalid_body",
    ),
    # A flag, strictly: "true", 1 and null are not it.
    "restore-string": ({"projectId": PROJECT, "restore": "true"}, "invalid_body"),
    "restore-int": ({"projectId": PROJECT, "restore": 1}, "invalid_body"),
    "restore-null": ({"projectId": PROJECT, "restore": None}, "invalid_body"),
}

PUT_BODIES: dict[str, tuple[bytes | Any, str]] = {
    "malformed": (b'{"min": 1, ', "malformed_json"),
    "empty": (b"", "malformed_json"),
    "array": ([1, 3], "invalid_body"),
    "array-of-object": ([{"min": 1, "max": 3}], "invalid_body"),
    "null": (None, "invalid_body"),
    "min-string": ({"min": "1", "max": 3}, "invalid_body"),
    "max-string": ({"min": 1, "max": "3"}, "invalid_body"),
    # 1.0 is an integer to JSON Schema (and taken as 1); a fraction is not.
    "min-fraction": ({"min": 1.5, "max": 3}, "invalid_body"),
    "min-bool": ({"min": True, "max": 3}, "invalid_body"),
    "min-null": ({"min": None, "max": 3}, "invalid_body"),
    "min-huge": (b'{"min": 1' + b"0" * 5000 + b', "max": 3}', "malformed_json"),
    "min-inf": (b'{"min": Infinity, "max": 3}', "malformed_json"),
    "min-1e400": (b'{"min": 1e400, "max": 3}', "invalid_body"),
    "unknown-field": ({"min": 1, "max": 3, "headroom": 2}, "invalid_body"),
    "missing-max": ({"min": 1}, "invalid_body"),
    "min-above-max": ({"min": 4, "max": 3}, "invalid_body"),
    "negative-min": ({"min": -1, "max": 3}, "invalid_body"),
    "negative-both": ({"min": -5, "max": -1}, "invalid_body"),
    "max-too-big": ({"min": 1, "max": 1001}, "invalid_body"),
    "deep": (b'{"min": ' + b"[" * 20000 + b"]" * 20000 + b', "max": 3}', "malformed_json"),
}


def _body_bytes(raw: bytes | Any, project: str) -> bytes:
    if isinstance(raw, bytes):
        return raw.replace(b"%s", project.encode()) if b"%s" in raw else raw
    return _dump(_fill(raw, project))


@pytest.mark.parametrize("case", list(CREATE_BODIES), ids=list(CREATE_BODIES))
def test_create_refuses_bad_bodies(env: Env, case: str) -> None:
    raw, code = CREATE_BODIES[case]
    body = _body_bytes(raw, str(env.user.project_id))
    _refused(
        env, "POST", SESSIONS, content=body, headers={"content-type": JSON}, status=400, code=code
    )


@pytest.mark.parametrize("case", list(PUT_BODIES), ids=list(PUT_BODIES))
def test_pool_put_refuses_bad_bodies(env: Env, case: str) -> None:
    raw, code = PUT_BODIES[case]
    body = _body_bytes(raw, "")
    _refused(
        env, "PUT", POOL_PUT, content=body, headers={"content-type": JSON}, status=400, code=code
    )


@pytest.mark.parametrize(
    ("template", "region", "code"),
    [
        ("%2E%2E", "local", "invalid_pool"),
        ("%2E%2E%2Fetc", "local", None),  # "../etc" has a slash: no route matches at all
        ("UPPER", "local", "invalid_pool"),
        ("react-web", "LOCAL", "invalid_pool"),
        ("react-web", "local%00", "invalid_pool"),
        ("react-web", "local%0A", "invalid_pool"),
        ("react-web%0A", "local", "invalid_pool"),
        ("a" * 41, "local", "invalid_pool"),
        ("-react", "local", "invalid_pool"),
        ("nope", "local", "unknown_template"),
        ("react-web", "invented", "unknown_region"),
    ],
)
def test_pool_put_refuses_bad_pool_names(
    env: Env, template: str, region: str, code: str | None
) -> None:
    response = _refused(
        env,
        "PUT",
        f"/api/admin/pool/{template}/{region}",
        content=_dump({"min": 1, "max": 3}),
        headers={"content-type": JSON},
        status=404 if code is None else 400,
        code=code or "not_found",
    )
    assert response.json()["error"] == (code or "not_found")


# --- transport: content type and size ----------------------------------------------------

TARGETS = {"create": ("POST", SESSIONS), "pool-put": ("PUT", POOL_PUT)}


def _valid_body(env: Env, target: str) -> bytes:
    if target == "create":
        return _dump({"projectId": str(env.user.project_id)})
    return _dump({"min": 1, "max": 3})


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json"],
)
def test_wrong_content_type_is_415(env: Env, target: str, content_type: str | None) -> None:
    method, url = TARGETS[target]
    headers = {} if content_type is None else {"content-type": content_type}
    _refused(
        env,
        method,
        url,
        content=_valid_body(env, target),
        headers=headers,
        status=415,
        code="unsupported_media_type",
    )


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_json_with_parameters_or_any_case_is_json(env: Env, target: str, content_type: str) -> None:
    # Parameters and case do not change the media type; what is refused is another type.
    # (An invalid body keeps the request from writing, so it proves the type was accepted
    # without changing anything.)
    method, url = TARGETS[target]
    _refused(
        env,
        method,
        url,
        content=b"[]",
        headers={"content-type": content_type},
        status=400,
        code="invalid_body",
    )


def _oversized(env: Env, target: str) -> bytes:
    pad = "x" * (env.max_body + 100)
    if target == "create":
        return _dump({"projectId": str(env.user.project_id), "options": {"pad": pad}})
    return _dump({"min": 1, "max": 3, "pad": pad})


@pytest.mark.parametrize("target", list(TARGETS))
def test_oversized_body_with_content_length_is_413(env: Env, target: str) -> None:
    method, url = TARGETS[target]
    body = _oversized(env, target)
    response = _refused(
        env,
        method,
        url,
        content=body,
        headers={"content-type": JSON},
        status=413,
        code="payload_too_large",
    )
    assert int(response.request.headers["content-length"]) == len(body)


@pytest.mark.parametrize("target", list(TARGETS))
def test_oversized_streamed_body_without_content_length_is_413(env: Env, target: str) -> None:
    method, url = TARGETS[target]
    body = _oversized(env, target)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = _refused(
        env,
        method,
        url,
        content=chunks(),
        headers={"content-type": JSON},
        status=413,
        code="payload_too_large",
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"


@pytest.mark.parametrize("target", list(TARGETS))
def test_lying_content_length_is_refused(env: Env, target: str) -> None:
    method, url = TARGETS[target]
    for declared in (str(env.max_body + 1), "-1", "1e9", "abc"):
        _refused(
            env,
            method,
            url,
            content=b"{}",
            headers={"content-type": JSON, "content-length": declared},
            status=413,
            code="payload_too_large",
        )


# --- paths, query strings, routes and methods ---------------------------------------------

BAD_IDS = ["not-a-uuid", "1", "' OR 1=1 --", "00000000-0000-4000-8000-00000000000", "%00", "%0A"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("POST", "/heartbeat")],
    ids=["get", "delete", "heartbeat"],
)
def test_non_uuid_session_id_is_400(env: Env, method: str, suffix: str, bad_id: str) -> None:
    _refused(env, method, f"{SESSIONS}/{bad_id}{suffix}", status=400, code="invalid_id")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("foo=1", "invalid_query"),
        ("projectId={project}&limit=1000", "invalid_query"),
        ("user_id={project}", "invalid_query"),
        ("projectId=nope", "invalid_id"),
        ("projectId=%27%20OR%20%271%27%3D%271", "invalid_id"),
    ],
)
def test_bad_list_query_is_400(env: Env, query: str, code: str) -> None:
    _refused(
        env,
        "GET",
        f"{SESSIONS}?{query.replace('{project}', str(env.user.project_id))}",
        status=400,
        code=code,
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/preview/nope",
        "/api/preview/sessions/00000000-0000-4000-8000-000000000000/nope",
        "/api/admin/pool/react-web",
        "/api/admin/pool/react-web/local/extra",
    ],
)
def test_unknown_route_is_404_json(env: Env, path: str) -> None:
    for method in ("GET", "POST"):
        _refused(env, method, path, status=404, code="not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", SESSIONS, {"GET", "HEAD", "POST"}),
        ("PUT", SESSIONS, {"GET", "HEAD", "POST"}),
        ("DELETE", SESSIONS, {"GET", "HEAD", "POST"}),
        ("PUT", f"{SESSIONS}/00000000-0000-4000-8000-000000000000", {"GET", "HEAD", "DELETE"}),
        ("POST", f"{SESSIONS}/00000000-0000-4000-8000-000000000000", {"GET", "HEAD", "DELETE"}),
        ("GET", f"{SESSIONS}/00000000-0000-4000-8000-000000000000/heartbeat", {"POST"}),
        ("POST", "/api/admin/pool", {"GET", "HEAD"}),
        ("DELETE", "/api/admin/pool", {"GET", "HEAD"}),
        ("GET", POOL_PUT, {"PUT", "DELETE"}),
        ("POST", POOL_PUT, {"PUT", "DELETE"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_405_json(env: Env, method: str, path: str, allowed: set[str]) -> None:
    response = _refused(env, method, path, status=405, code="method_not_allowed")
    # Allow names every method the path serves, not just one of them.
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


# --- hostile tokens -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 with the real secret by hand: PyJWT will not write a header it would refuse."""
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    mac = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _hostile_tokens(user: User) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "app_metadata": {"role": "admin"},
    }
    header, payload, signature = user.token.split(".")
    return {
        "10k-token": f"{header}.{payload}{'A' * 10_240}.{signature}",
        "10k-valid-signature": jwt.encode({**claims, "pad": "x" * 10_240}, JWT_SECRET),
        "huge-kid-valid-signature": jwt.encode(claims, JWT_SECRET, headers={"kid": "k" * 20_000}),
        "kid-path-traversal": jwt.encode(
            claims, "wrong-secret-" + "w" * 32, headers={"kid": "../../../../etc/passwd"}
        ),
        "kid-object": _signed({"alg": "HS256", "kid": {"a": 1}}, claims),
        "kid-number": _signed({"alg": "HS256", "kid": 12345}, claims),
        "header-not-json": f"{_b64(b'{not json')}.{payload}.{signature}",
        "header-array": f"{_b64(b'[1]')}.{payload}.{signature}",
        "too-many-segments": f"{user.token}.{signature}",
        "sql": "' OR 1=1 --",
    }


HOSTILE = [
    "10k-token",
    "10k-valid-signature",
    "huge-kid-valid-signature",
    "kid-path-traversal",
    "kid-object",
    "kid-number",
    "header-not-json",
    "header-array",
    "too-many-segments",
    "sql",
]


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("target", ["create", "pool-put", "list"])
def test_hostile_tokens_are_401(env: Env, target: str, name: str) -> None:
    token = _hostile_tokens(env.user)[name]
    method, url, body = {
        "create": ("POST", SESSIONS, _valid_body(env, "create")),
        "pool-put": ("PUT", POOL_PUT, _valid_body(env, "pool-put")),
        "list": ("GET", SESSIONS, None),
    }[target]
    _refused(
        env,
        method,
        url,
        content=body,
        headers={"content-type": JSON, "authorization": f"Bearer {token}"},
        status=401,
        code="unauthorized",
    )


def test_control_the_same_requests_succeed_when_well_formed(settings: Settings) -> None:
    """The baseline the refusals are measured against: with a good body, both writes work."""
    user = make_user(settings.database_url or "", admin=True)
    fill_pool(1)
    with TestClient(create_app(settings)) as client:
        created = client.post(
            SESSIONS,
            content=_dump({"projectId": str(user.project_id), "options": _nested(10)}),
            headers={**user.headers, "content-type": "application/json; charset=utf-8"},
        )
        assert created.status_code == 201, created.text
        put = client.put(POOL_PUT, json={"min": 0, "max": 1000}, headers=user.headers)
        assert put.status_code == 200, put.text
    assert uuid.UUID(created.json()["id"])

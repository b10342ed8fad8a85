"""Every API route refuses every kind of bad access token with the same 401 and changes nothing.

The bad tokens all carry an admin claim and name a real user who owns a real project and a live
session, so a verifier that let any of them through would make the request succeed (and, for
the writes, change the stores) instead of returning 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from app.server import create_app
from app.settings import Settings
from tests.conftest import (
    JWT_SECRET,
    User,
    fill_pool,
    make_user,
)
from tests.integration.stores import (
    db_snapshot,
    emptied_stores_settings,
    ready_machines,
    redis_snapshot,
)

_DROP = object()


# --- token crafting -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _claims(user_id: uuid.UUID, **overrides: object) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
        "app_metadata": {"provider": "email", "role": "admin"},
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


def _hmac_token(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    """Sign by hand: PyJWT rightly refuses a PEM key as an HMAC secret, and warns on short keys."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signing_input = f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(claims)}"
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _expired(user: User) -> dict[str, str]:
    now = int(time.time())
    return _bearer(jwt.encode(_claims(user.id, iat=now - 7200, exp=now - 60), JWT_SECRET))


def _missing_exp(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, exp=_DROP), JWT_SECRET))


def _alg_none(user: User) -> dict[str, str]:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims(user.id))}."
    return _bearer(token)


def _hs256_with_public_key(user: User) -> dict[str, str]:
    public_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return _bearer(_hmac_token(_claims(user.id), public_pem))


def _hs512_with_real_secret(user: User) -> dict[str, str]:
    # The right key but an algorithm the key does not imply: the token must not choose.
    return _bearer(_hmac_token(_claims(user.id), JWT_SECRET.encode(), "HS512"))


def _aud_anon(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, aud="anon"), JWT_SECRET))


def _missing_aud(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, aud=_DROP), JWT_SECRET))


def _role_service(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, role="service_role"), JWT_SECRET))


def _role_anon(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, role="anon", aud="authenticated"), JWT_SECRET))


def _sub_not_uuid(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, sub="admin"), JWT_SECRET))


def _not_yet_valid(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id, nbf=int(time.time()) + 600), JWT_SECRET))


def _wrong_secret(user: User) -> dict[str, str]:
    return _bearer(jwt.encode(_claims(user.id), "another-project-secret-" + "z" * 32))


def _tampered(user: User) -> dict[str, str]:
    # A genuine non-admin token whose payload is swapped for an admin one, signature kept.
    header, _, signature = user.token.split(".")
    forged = _claims(user.id)
    return _bearer(f"{header}.{_segment(forged)}.{signature}")


def _garbage(user: User) -> dict[str, str]:
    return _bearer("not.a.jwt")


def _no_header(user: User) -> dict[str, str]:
    return {}


def _empty_bearer(user: User) -> dict[str, str]:
    return {"Authorization": "Bearer "}


def _basic_scheme(user: User) -> dict[str, str]:
    return {"Authorization": f"Basic {user.token}"}


def _token_scheme(user: User) -> dict[str, str]:
    return {"Authorization": f"Token {user.token}"}


def _bare_token(user: User) -> dict[str, str]:
    return {"Authorization": user.token}


BAD_AUTH: dict[str, Callable[[User], dict[str, str]]] = {
    "expired": _expired,
    "missing-exp": _missing_exp,
    "alg-none": _alg_none,
    "hs256-public-key": _hs256_with_public_key,
    "hs512-real-secret": _hs512_with_real_secret,
    "aud-anon": _aud_anon,
    "missing-aud": _missing_aud,
    "role-service": _role_service,
    "role-anon": _role_anon,
    "sub-not-uuid": _sub_not_uuid,
    "not-yet-valid": _not_yet_valid,
    "wrong-secret": _wrong_secret,
    "tampered-payload": _tampered,
    "garbage": _garbage,
    "no-header": _no_header,
    "empty-bearer": _empty_bearer,
    "basic-scheme": _basic_scheme,
    "token-scheme": _token_scheme,
    "no-scheme": _bare_token,
}

# (method, path; {sid} is the user's live session, body)
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "create": ("POST", "/api/preview/sessions", {"projectId": "{project}"}),
    "list": ("GET", "/api/preview/sessions", None),
    "get": ("GET", "/api/preview/sessions/{sid}", None),
    "delete": ("DELETE", "/api/preview/sessions/{sid}", None),
    "heartbeat": ("POST", "/api/preview/sessions/{sid}/heartbeat", None),
    "pool-get": ("GET", "/api/admin/pool", None),
    "pool-put": ("PUT", "/api/admin/pool/react-web/local", {"min": 1, "max": 3}),
}


@dataclass
class Env:
    client: TestClient
    user: User
    session_id: str
    database_url: str


@contextmanager
def _open_env(settings: Settings) -> Iterator[Env]:
    database_url = settings.database_url or ""
    user = make_user(database_url)
    fill_pool(3)
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/api/preview/sessions", json={"projectId": str(user.project_id)}, headers=user.headers
        )
        assert created.status_code == 201, created.text
        yield Env(client, user, created.json()["id"], database_url)


@pytest.fixture(scope="module")
def shared_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One app, user and session for the whole matrix: every request in it must fail and
    change nothing, so the tests cannot disturb one another (each compares its own before and
    after). The function-scoped `settings` fixture would cost a fresh app per case."""
    settings = emptied_stores_settings(database_url, tmp_path_factory.mktemp("auth") / "data")
    with _open_env(settings) as env:
        yield env


@pytest.mark.parametrize("bad", list(BAD_AUTH), ids=list(BAD_AUTH))
@pytest.mark.parametrize("route", list(ROUTES), ids=list(ROUTES))
def test_bad_token_is_401_and_changes_nothing(shared_env: Env, route: str, bad: str) -> None:
    env = shared_env
    method, path, body = ROUTES[route]
    url = path.format(sid=env.session_id)
    payload = (
        {k: (str(env.user.project_id) if v == "{project}" else v) for k, v in body.items()}
        if body is not None
        else None
    )
    ready_before = ready_machines()
    assert len(ready_before) == 2
    db_before, redis_before = db_snapshot(env.database_url), redis_snapshot()

    response = env.client.request(method, url, json=payload, headers=BAD_AUTH[bad](env.user))

    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    body_json = response.json()
    assert set(body_json) == {"error", "message"}
    assert body_json["error"] == "unauthorized"
    assert isinstance(body_json["message"], str) and body_json["message"]
    assert db_snapshot(env.database_url) == db_before
    assert redis_snapshot() == redis_before
    assert ready_machines() == ready_before


def test_the_valid_token_passes_on_every_route(settings: Settings) -> None:
    """The control: the user the bad tokens impersonate gets through with a real token (the
    admin routes answer 403 because the real token carries no admin claim)."""
    with _open_env(settings) as env:
        _check_valid_token(env)


def _check_valid_token(env: Env) -> None:
    expected = {
        "create": 201,
        "list": 200,
        "get": 200,
        "heartbeat": 204,
        "delete": 204,
        "pool-get": 403,
        "pool-put": 403,
    }
    for route, status in expected.items():
        method, path, body = ROUTES[route]
        payload = (
            {k: (str(env.user.project_id) if v == "{project}" else v) for k, v in body.items()}
            if body is not None
            else None
        )
        response = env.client.request(
            method, path.format(sid=env.session_id), json=payload, headers=env.user.headers
        )
        assert response.status_code == status, (route, response.text)

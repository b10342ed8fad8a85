"""Schemathesis against the published document: every operation of the API, with all its checks
(server errors, status codes and answers as documented, valid data accepted, invalid data
refused, the access token not ignored), on the real app with real Postgres and Redis.

Bounded for CI: a fixed seed, deterministic generation, at most MAX_EXAMPLES cases per phase
and operation. The WebSocket routes are not in the document, so nothing here needs one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from app.routes.health import WORKER_HEALTH_KEY
from app.server import create_app
from app.settings import Settings, load_settings
from app.timeline_schemas import parse_since
from tests.conftest import JWT_SECRET, TOKEN_SECRET, User, claimed_redis_url, fill_pool, make_user

MAX_EXAMPLES = 25
SEED = 20261204

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "checks": {
            # 503 is a designed answer (no machine free, a worker gone; with Retry-After) and
            # each operation documents it where it happens; a 500 stays a failure.
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
        },
    }
)


# The document as an app with the tests' configuration publishes it (the test checks the app
# it fuzzes serves this very document). Loaded at import, as schemathesis parametrizes then;
# building the app connects to nothing.
DOCUMENT = create_app(
    load_settings(supabase_jwt_secret=JWT_SECRET, preview_token_secret=TOKEN_SECRET)
).state.openapi
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


class AppUnderTest:
    """The ASGI app schemathesis calls (its checks' own probes too): the current test's app,
    built on that test's stores."""

    def __init__(self) -> None:
        self.app: Starlette | None = None
        self.session_id: str | None = None  # the test user's own session
        self.project_id: str | None = None  # and project

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no test is running"
        await self.app(scope, receive, send)


APP = AppUnderTest()
schema.app = APP


@schema.hook
def map_case(context: Any, case: schemathesis.Case[Any]) -> schemathesis.Case[Any]:
    """Half the valid session and project ids name the user's own, so the fuzzer gets past
    404 and 403: reads, heartbeats, tokens, shares and the end (then 409), and leases."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    session = case.path_parameters.get("sessionId") if case.path_parameters else None
    if APP.session_id and isinstance(session, str) and _heads(session):
        case.path_parameters = {**case.path_parameters, "sessionId": APP.session_id}
    body = case.body
    project = body.get("projectId") if isinstance(body, dict) else None
    if APP.project_id and isinstance(body, dict) and isinstance(project, str) and _heads(project):
        case.body = {**body, "projectId": APP.project_id}
    query = case.query  # GET /api/preview/backend?projectId= (and the session list's filter)
    asked = query.get("projectId") if isinstance(query, dict) else None
    if APP.project_id and isinstance(query, dict) and isinstance(asked, str) and _heads(asked):
        case.query = {**query, "projectId": APP.project_id}
    return case


def _heads(generated: str) -> bool:
    # A coin the generated value throws, so the choice is as deterministic as the value.
    return generated[-1:] in set("02468ace")


@schema.hook
def filter_case(context: Any, case: schemathesis.Case[Any]) -> bool:
    """Each min must not exceed its max (PoolBoundsBody): a rule between two fields, which JSON
    Schema cannot state, so the document says it in words and the valid cases keep it."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    if _in_the_future(case.query):
        return False  # `since` (admin stats) must not be in the future: said in words too
    return all(low <= high for low, high in _bound_pairs(case.body))


def _in_the_future(query: Any) -> bool:
    since = query.get("since") if isinstance(query, dict) else None
    if not isinstance(since, str):
        return False
    try:
        parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        return "future" in str(exc)
    return False


def _bound_pairs(body: Any) -> Iterator[tuple[float, float]]:
    if not isinstance(body, dict):
        return
    for bounds in (body, body.get("suspended"), body.get("stopped")):
        if isinstance(bounds, dict):
            low, high = bounds.get("min"), bounds.get("max")
            if isinstance(low, int | float) and isinstance(high, int | float):
                yield low, high


@dataclass(frozen=True)
class FuzzEnv:
    user: User
    admin: User


@pytest.fixture
def fuzz_env(settings: Settings) -> Iterator[FuzzEnv]:
    # Machines in both configured templates, so a valid create can lease (201), and a worker's
    # heartbeat, so /readyz can answer 200.
    fill_pool(4, template="react-web")
    fill_pool(4, template="react-native-web")
    store = redis.Redis.from_url(claimed_redis_url())
    try:
        store.set(WORKER_HEALTH_KEY, "x")
    finally:
        store.close()
    database = settings.database_url or ""
    env = FuzzEnv(make_user(database), make_user(database, admin=True))
    with TestClient(create_app(settings)) as client:
        created = client.post(
            "/api/preview/sessions",
            json={"projectId": str(env.user.project_id)},
            headers=env.user.headers,
        )
        assert created.status_code == 201, created.text
    APP.app, APP.session_id = create_app(settings), created.json()["id"]
    APP.project_id = str(env.user.project_id)
    assert APP.app.state.openapi == DOCUMENT
    try:
        yield env
    finally:
        # Schemathesis runs the app's lifespan in its own thread until asked to stop it: stop
        # it here, while this test's Postgres and Redis are still there.
        asgi.shutdown_lifespans()
        APP.app = APP.session_id = APP.project_id = None


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_against_its_document(case: schemathesis.Case[Any], fuzz_env: FuzzEnv) -> None:
    who = fuzz_env.admin if case.path.startswith("/api/admin/") else fuzz_env.user
    case.call_and_validate(headers=who.headers)

"""The published OpenAPI document, liveness, and readiness (which needs a live worker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from starlette.routing import Route
from starlette.testclient import TestClient

from app.routes.health import WORKER_HEALTH_KEY
from app.server import create_app
from app.settings import Settings
from tests.conftest import REDIS_URL

ROUTES = {
    ("/api/preview/sessions", "post"),
    ("/api/preview/sessions", "get"),
    ("/api/preview/sessions/{sessionId}", "get"),
    ("/api/preview/sessions/{sessionId}", "delete"),
    ("/api/preview/sessions/{sessionId}/heartbeat", "post"),
    ("/api/preview/sessions/{sessionId}/token", "post"),
    ("/api/preview/sessions/{sessionId}/share", "post"),
    ("/api/preview/devices", "get"),
    ("/api/admin/pool", "get"),
    ("/api/admin/pool/{template}/{region}", "put"),
    ("/api/admin/pool/{template}/{region}", "delete"),
    ("/api/admin/pool/history", "get"),
    ("/api/admin/sessions", "get"),
    ("/api/admin/sessions/{sessionId}/timeline", "get"),
    ("/api/preview/sessions/{sessionId}/timeline", "get"),
    ("/api/admin/stats", "get"),
    ("/api/admin/alerts", "get"),
    ("/api/admin/rollout/report", "get"),
    ("/api/preview/appetize-sessions", "post"),
    ("/api/preview/appetize-sessions/{sessionId}/events", "post"),
    ("/api/preview/backend", "get"),
    ("/api/admin/flags", "get"),
    ("/api/admin/flags/global", "put"),
    ("/api/admin/flags/audit", "get"),
    ("/api/admin/flags/users/{user}", "put"),
    ("/api/admin/flags/users/{user}", "delete"),
    ("/api/admin/flags/projects/{project}", "put"),
    ("/api/admin/flags/projects/{project}", "delete"),
    ("/api/admin/flags/plans/{plan}", "put"),
    ("/api/admin/flags/plans/{plan}", "delete"),
    ("/healthz", "get"),
    ("/readyz", "get"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document(client: TestClient) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()

    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert documented >= ROUTES, ROUTES - documented

    schemas = doc["components"]["schemas"]
    for name in ("CreateSessionBody", "Session", "Error", "PoolBoundsBody"):
        assert schemas[name]["type"] == "object", name
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    # camelCase on the wire, as the editor sends and reads it.
    create = schemas["CreateSessionBody"]
    assert "projectId" in create["properties"] and "project_id" not in create["properties"]
    assert create["required"] == ["projectId"]
    assert create.get("additionalProperties") is False
    assert {"id", "status", "projectId", "previewUrl", "wsUrl", "token", "expiresAt"} <= set(
        schemas["Session"]["properties"]
    )

    # Every reference resolves, and every path template's parameters are declared.
    for ref in set(_refs(doc)):
        assert _resolve(doc, ref) is not None, ref
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        for method, operation in item.items():
            if method not in METHODS:
                continue
            names = declared | {p["name"] for p in operation.get("parameters", [])}
            wanted = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
            assert wanted <= names, (path, method, wanted - names)
            assert operation["responses"], (path, method)
            for status, answer in operation["responses"].items():
                assert status.isdigit() and answer["description"], (path, method, status)

    # Every error status of the API routes returns the Error schema.
    public = {("/healthz", "get"), ("/readyz", "get"), ("/api/preview/devices", "get")}
    for path, method in ROUTES - public:
        operation = doc["paths"][path][method]
        assert "401" in operation["responses"], (path, method)
        for status, answer in operation["responses"].items():
            if int(status) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/readyz"]["get"]["security"] == []


def test_openapi_matches_the_served_routes(settings: Settings) -> None:
    """The document and the route table cannot drift: each served (path, method) is
    documented, and each documented one is served."""
    app = create_app(settings)
    served = set()
    for route in app.routes:
        if not isinstance(route, Route) or route.path == "/api/openapi.json":
            continue
        if route.path.startswith("/ui/") or route.path == "/admin":
            continue  # static assets of the browser side and the dashboard page, not the API
        path = route.path.replace("{session_id}", "{sessionId}")
        for method in route.methods or ():
            if method != "HEAD":
                served.add((path, method.lower()))
    assert served == ROUTES


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_needs_a_worker(client: TestClient) -> None:
    store = redis.Redis.from_url(REDIS_URL)
    try:
        store.delete(WORKER_HEALTH_KEY)

        without = client.get("/readyz")
        assert without.status_code == 503, without.text
        body = without.json()
        assert body["status"] == "not_ready"
        assert body["checks"]["postgres"] == "ok"
        assert body["checks"]["redis"] == "ok"
        assert body["checks"]["worker"].startswith("failing")

        store.set(WORKER_HEALTH_KEY, "x")
        with_worker = client.get("/readyz")
        assert with_worker.status_code == 200, with_worker.text
        assert with_worker.json() == {
            "status": "ready",
            "checks": {"postgres": "ok", "redis": "ok", "worker": "ok"},
        }

        # The worker's key expires when it stops refreshing it: readiness follows.
        store.delete(WORKER_HEALTH_KEY)
        assert client.get("/readyz").status_code == 503
    finally:
        store.delete(WORKER_HEALTH_KEY)
        store.close()

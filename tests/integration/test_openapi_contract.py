"""The document is generated from the route table and the models, and states the real rules:
what the fuzzer (test_openapi_fuzz.py) found the document and the app disagreeing on, each
pinned here on its own."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from pydantic.alias_generators import to_snake
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from app.openapi import build_openapi
from app.server import create_app
from app.settings import Settings, load_settings
from tests.conftest import JWT_SECRET, TOKEN_SECRET, fill_pool, make_user

SESSIONS = "/api/preview/sessions"


def _settings(**overrides: Any) -> Settings:
    return load_settings(
        supabase_jwt_secret=JWT_SECRET, preview_token_secret=TOKEN_SECRET, **overrides
    )


def _served(settings: Settings) -> set[tuple[str, str]]:
    """(route path without converters, method) for every route the app puts in its schema."""
    served = set()
    for route in create_app(settings).routes:
        if isinstance(route, Route) and route.include_in_schema:
            path = re.sub(r":[^}]+}", "}", route.path)
            served |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return served


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(path with its parameters named as the route names them, method) in the document."""
    return {
        (re.sub(r"{(\w+)}", lambda m: "{" + to_snake(m.group(1)) + "}", path), method)
        for path, item in document["paths"].items()
        for method in item
    }


@pytest.mark.parametrize("dev_mode", [False, True])
def test_the_document_names_exactly_the_served_routes(dev_mode: bool) -> None:
    settings = _settings(preview_dev_mode=dev_mode)
    served = _served(settings)
    assert _documented(create_app(settings).state.openapi) == served
    assert (("/api/dev/token", "post") in served) is dev_mode
    assert ("/api/preview/sessions/{session_id}", "delete") in served


def test_a_route_without_a_declaration_cannot_be_served_undocumented() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match="declares no operation"):
        build_openapi([Route("/api/new", endpoint, methods=["GET"])], _settings())
    hidden = Route("/static/x", endpoint, methods=["GET"], include_in_schema=False)
    assert build_openapi([hidden], _settings())["paths"] == {}


def test_templates_and_regions_are_the_configured_ones() -> None:
    settings = _settings(preview_templates="react-web,expo-web", preview_regions="ams,iad")
    document = create_app(settings).state.openapi
    body = document["components"]["schemas"]["CreateSessionBody"]["properties"]
    assert body["template"]["anyOf"][0]["enum"] == ["react-web", "expo-web"]
    assert body["region"]["anyOf"][0]["enum"] == ["local", "ams", "iad"]
    pool = document["paths"]["/api/admin/pool/{template}/{region}"]
    put = {p["name"]: p["schema"] for p in pool["put"]["parameters"]}
    assert put["template"]["enum"] == ["react-web", "expo-web"]
    assert put["region"]["enum"] == ["local", "ams", "iad"]
    # Removing a pool also works for a template or region the configuration has dropped.
    delete = {p["name"]: p["schema"] for p in pool["delete"]["parameters"]}
    assert "enum" not in delete["template"] and delete["template"]["pattern"]
    assert "x-choices" not in str(document)


def _session_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM preview_sessions").fetchone()
    assert row is not None
    return int(row[0])


def test_an_empty_or_odd_project_id_is_a_clear_400_that_changes_nothing(
    settings: Settings,
) -> None:
    database = settings.database_url or ""
    user = make_user(database)
    fill_pool(1)
    with TestClient(create_app(settings)) as client:
        for project in ("", " ", user.project_id.hex, f"{{{user.project_id}}}"):
            created = client.post(SESSIONS, json={"projectId": project}, headers=user.headers)
            assert created.status_code == 400, (project, created.text)
            assert created.json() == {
                "error": "invalid_body",
                "message": "projectId: must be a UUID",
            }
        assert _session_count(database) == 0
        listed = client.get(f"{SESSIONS}?projectId=", headers=user.headers)
        assert listed.status_code == 400 and listed.json()["error"] == "invalid_id", listed.text
        twice = client.get(
            f"{SESSIONS}?projectId={user.project_id}&projectId={user.project_id}",
            headers=user.headers,
        )
        assert twice.status_code == 400 and twice.json()["error"] == "invalid_query"
        bare = client.get(f"{SESSIONS}/{user.project_id.hex}", headers=user.headers)
        assert bare.status_code == 400 and bare.json()["error"] == "invalid_id"
        # The one lease there is was never taken: a valid request still gets it.
        good = client.post(SESSIONS, json={"projectId": str(user.project_id)}, headers=user.headers)
        assert good.status_code == 201, good.text


def test_every_template_the_document_offers_is_leased(settings: Settings) -> None:
    user = make_user(settings.database_url or "")
    app = create_app(settings)
    body = app.state.openapi["components"]["schemas"]["CreateSessionBody"]["properties"]
    offered = body["template"]["anyOf"][0]["enum"]
    assert offered == list(settings.templates)
    with TestClient(app) as client:
        for template in offered:
            fill_pool(1, template=template)
            created = client.post(
                SESSIONS,
                json={"projectId": str(user.project_id), "template": template},
                headers=user.headers,
            )
            assert created.status_code == 201, created.text
            assert created.json()["template"] == template
            ended = client.delete(f"{SESSIONS}/{created.json()['id']}", headers=user.headers)
            assert ended.status_code == 204


def test_a_device_of_another_platform_is_stated_and_refused(settings: Settings) -> None:
    user = make_user(settings.database_url or "")
    fill_pool(1)
    app = create_app(settings)
    rules = app.state.openapi["components"]["schemas"]["CreateSessionBody"]["allOf"]
    web = next(r for r in rules if r["if"]["properties"]["deviceType"]["const"] == "web")
    assert "iphone-15" not in web["then"]["properties"]["device"]["anyOf"][0]["enum"]
    with TestClient(app) as client:
        refused = client.post(
            SESSIONS,
            json={"projectId": str(user.project_id), "deviceType": "web", "device": "iphone-15"},
            headers=user.headers,
        )
        assert refused.status_code == 400 and refused.json()["error"] == "unknown_device"
        assert _session_count(settings.database_url or "") == 0


def test_integral_numbers_are_integers_as_json_schema_says(settings: Settings) -> None:
    admin = make_user(settings.database_url or "", admin=True)
    with TestClient(create_app(settings)) as client:
        stored = client.put(
            "/api/admin/pool/react-web/local",
            json={"min": 1.0, "max": 3e0, "guest": {"cpus": 2.0, "memoryMb": 512}},
            headers=admin.headers,
        )
        assert stored.status_code == 200, stored.text
        answer = stored.json()
        assert (answer["min"], answer["max"], answer["guest"]) == (
            1,
            3,
            {"cpus": 2, "memoryMb": 512},
        )
        fraction = client.put(
            "/api/admin/pool/react-web/local", json={"min": 1.5, "max": 3}, headers=admin.headers
        )
        assert fraction.status_code == 400 and fraction.json()["error"] == "invalid_body"
        pools = client.get("/api/admin/pool", headers=admin.headers).json()["pools"]
        assert [p["min"] for p in pools if p["template"] == "react-web"] == [1]  # kept


def test_dev_token_takes_the_admin_flag_it_documents(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"preview_dev_mode": True}))) as client:
        refused = client.post("/api/dev/token?admin=yes")
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_query"
        assert client.post("/api/dev/token?admin=1").status_code == 200

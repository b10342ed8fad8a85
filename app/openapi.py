"""The OpenAPI document, built from the route table and the pydantic bodies so it cannot drift
from the code that serves it."""

from __future__ import annotations

from typing import Any

from app.schemas import CreateSessionBody, PoolBoundsBody, SessionView, ShareView, TokenView

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "malformed input",
        401: "missing or invalid access token",
        403: "forbidden",
        404: "not found (another user's session is reported as not found)",
        409: "the session has ended",
        413: "body too large",
        415: "not JSON",
        429: "quota or rate limit (Retry-After)",
        503: "no capacity (Retry-After)",
    }
    return {str(c): {"description": reasons[c], **_json(_ref("Error"))} for c in codes}


_DEVICE = {
    "type": "object",
    "required": ["id", "name", "platform", "width", "height", "pixelRatio", "frame"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "platform": {"enum": ["web", "ios", "android"]},
        "width": {"type": "integer", "description": "CSS pixels, portrait"},
        "height": {"type": "integer", "description": "CSS pixels, portrait"},
        "pixelRatio": {"type": "number"},
        "frame": {"enum": ["phone", "tablet", "desktop"]},
    },
}

_SESSION_ID = {
    "name": "sessionId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def build_openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR}
    for model in (CreateSessionBody, PoolBoundsBody):
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))  # nested bodies become components too
        schemas[model.__name__] = schema
    schemas["Session"] = SessionView.model_json_schema(by_alias=True, mode="serialization")
    schemas["Token"] = TokenView.model_json_schema(by_alias=True, mode="serialization")
    schemas["Share"] = ShareView.model_json_schema(by_alias=True, mode="serialization")
    schemas["Device"] = _DEVICE
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Preview orchestrator", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "Supabase access JWT",
                }
            },
        },
        "security": auth,
        "paths": {
            "/api/preview/sessions": {
                "post": {
                    "summary": "Lease a preview machine for a new session",
                    "requestBody": {"required": True, **_json(_ref("CreateSessionBody"))},
                    "responses": {
                        "201": {
                            "description": "leased from the warm pool",
                            **_json(_ref("Session")),
                        },
                        "202": {
                            "description": "pool empty: booting on demand",
                            **_json(_ref("Session")),
                        },
                        **_errors(400, 401, 403, 413, 415, 429, 503),
                    },
                },
                "get": {
                    "summary": "List the caller's sessions",
                    "parameters": [
                        {
                            "name": "projectId",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "the caller's sessions, newest first",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "sessions": {"type": "array", "items": _ref("Session")}
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401),
                    },
                },
            },
            "/api/preview/sessions/{sessionId}": {
                "parameters": [_SESSION_ID],
                "get": {
                    "summary": "Read one of the caller's sessions",
                    "responses": {
                        "200": {"description": "the session", **_json(_ref("Session"))},
                        **_errors(400, 401, 404),
                    },
                },
                "delete": {
                    "summary": "End the session and release its machine",
                    "responses": {"204": {"description": "ended"}, **_errors(400, 401, 404)},
                },
            },
            "/api/preview/sessions/{sessionId}/heartbeat": {
                "parameters": [_SESSION_ID],
                "post": {
                    "summary": "Keep the session from idling out",
                    "responses": {
                        "204": {"description": "recorded"},
                        **_errors(400, 401, 404, 409),
                    },
                },
            },
            "/api/preview/sessions/{sessionId}/token": {
                "parameters": [_SESSION_ID],
                "post": {
                    "summary": "A fresh session token (the editor refreshes before expiry)",
                    "responses": {
                        "200": {"description": "the new token", **_json(_ref("Token"))},
                        **_errors(400, 401, 404, 409),
                    },
                },
            },
            "/api/preview/sessions/{sessionId}/share": {
                "parameters": [_SESSION_ID],
                "post": {
                    "summary": "A short-lived link that opens the preview only (QR code)",
                    "responses": {
                        "200": {"description": "the link", **_json(_ref("Share"))},
                        **_errors(400, 401, 404, 409),
                    },
                },
            },
            "/api/preview/devices": {
                "get": {
                    "security": [],
                    "summary": "The device catalogue",
                    "responses": {
                        "200": {
                            "description": "phones, tablets and desktops",
                            **_json(
                                {
                                    "type": "object",
                                    "required": ["devices"],
                                    "properties": {
                                        "devices": {"type": "array", "items": _ref("Device")}
                                    },
                                }
                            ),
                        }
                    },
                }
            },
            "/api/admin/pool": {
                "get": {
                    "summary": "Pool counts, bounds and hit ratio (admins)",
                    "responses": {
                        "200": {"description": "per (template, region)"},
                        **_errors(401, 403),
                    },
                },
            },
            "/api/admin/pool/{template}/{region}": {
                "parameters": [
                    {
                        "name": "template",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "region",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "put": {
                    "summary": "Set the pool's bounds (admins)",
                    "requestBody": {"required": True, **_json(_ref("PoolBoundsBody"))},
                    "responses": {
                        "200": {"description": "stored; a resize is queued"},
                        **_errors(400, 401, 403, 413, 415),
                    },
                },
                "delete": {
                    "summary": "Remove the pool: every bound becomes 0 and it drains (admins)",
                    "responses": {
                        "202": {"description": "bounds set to 0; a resize is queued"},
                        **_errors(400, 401, 403, 404),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "security": [],
                    "summary": "Liveness",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "security": [],
                    "summary": "Postgres, Redis and a worker",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
        },
    }

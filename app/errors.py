"""HTTP errors: every failure leaves as `{"error": code, "message": text}`.

Handlers raise ApiError; errors of the layers below are mapped to status codes here, in one
place, and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pool.core.errors import PoolUnavailable
from sql.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # Members of the answer beside error and message (e.g. `fallback`: app.rollout.fallback).
        self.extra = dict(extra or {})


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str = "session") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(message: str = "a valid Supabase access token is required") -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def too_many(code: str, message: str, retry_after_ms: int) -> ApiError:
    seconds = max(1, -(-retry_after_ms // 1000))
    return ApiError(429, code, message, headers={"Retry-After": str(seconds)})


def unavailable(code: str, message: str, retry_after: int = 2) -> ApiError:
    return ApiError(503, code, message, headers={"Retry-After": str(retry_after)})


def client_closed() -> ApiError:
    """The client closed the connection before the answer (nginx's 499). Nobody reads it; it
    names the case in the request log."""
    return ApiError(499, "client_closed_request", "the client closed the connection")


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {**(extra or {}), "error": code, "message": message}, status_code=status, headers=headers
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers, exc.extra)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(
        exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers
    )


async def store_unavailable_handler(request: Request, exc: Exception) -> Response:
    log.error("store unavailable: %s", exc)
    what = "database" if isinstance(exc, DatabaseUnavailable) else "pool"
    return error_response(
        503, "unavailable", f"the {what} is unavailable, try again", {"Retry-After": "2"}
    )


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error")


EXCEPTION_HANDLERS = {
    Exception: internal_error_handler,
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    DatabaseUnavailable: store_unavailable_handler,
    PoolUnavailable: store_unavailable_handler,
}

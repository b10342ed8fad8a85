"""Checks requests (and the fake's own answers) against Fly's official OpenAPI document.

The document is the official one, stored unmodified in tests/fakes/fly/ (its provenance and
sha256 in machines-openapi3.SOURCE.md beside it), so that the suite runs from a plain clone;
FLY_OPENAPI_SPEC names another copy (say a newer one fetched from docs.machines.dev). It is
parsed once per process: that takes about a second.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.contrib.starlette.requests import StarletteOpenAPIRequest
from starlette.requests import Request
from werkzeug.datastructures import Headers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = Path(__file__).resolve().parent / "fly" / "machines-openapi3.json"
# The spec's only server; the fake stands in for it whatever host the client was given.
SPEC_SERVER = "https://api.machines.dev"


def spec_path() -> Path:
    configured = os.environ.get("FLY_OPENAPI_SPEC")
    path = Path(configured) if configured else DEFAULT_SPEC
    if not path.is_file():
        origin = "FLY_OPENAPI_SPEC names" if configured else "the checkout should hold"
        raise FileNotFoundError(
            f"the Fly OpenAPI document is not at {path} ({origin} it); fetch it from "
            "https://docs.machines.dev/spec/openapi3.json"
        )
    return path


@functools.cache
def _load(path: Path) -> tuple[OpenAPI, dict[str, Any]]:
    document = json.loads(path.read_text())
    return OpenAPI.from_dict(document), document


class _Request(StarletteOpenAPIRequest):
    @property
    def host_url(self) -> str:
        return SPEC_SERVER


class _Response:
    def __init__(self, status: int, body: bytes, content_type: str, headers: Headers) -> None:
        self.status_code = status
        self.data = body
        self.content_type = content_type
        self.headers = headers


class SpecValidator:
    def __init__(self, path: Path | None = None) -> None:
        self._api, self._document = _load(path or spec_path())
        # The verdict depends only on what the key holds (the one header parameter the
        # Machines paths declare is the lease nonce), and validating costs milliseconds.
        self._verdicts: dict[tuple[str, str, bytes, str, str, bytes], list[str]] = {}

    def request_errors(self, request: Request, body: bytes) -> list[str]:
        """Every way the request breaks the document (unknown path or method, parameter
        types, missing required parameters or headers, body schema)."""
        headers = request.headers
        key = (
            request.method,
            request.url.path,
            request.scope.get("query_string", b""),
            headers.get("content-type", ""),
            headers.get("fly-machine-lease-nonce", "\0"),
            body,
        )
        if key not in self._verdicts:
            checked = _Request(request, body or None)
            errors = [_describe(error) for error in self._api.iter_request_errors(checked)]
            self._verdicts[key] = errors
        return list(self._verdicts[key])

    def response_errors(
        self,
        request: Request,
        template: str,
        status: int,
        body: bytes,
        headers: dict[str, str],
    ) -> list[str]:
        """Schema errors in a JSON answer, where the document describes one for this status
        (it documents few error answers and no body for start, stop or delete)."""
        operation = self._document["paths"][template][request.method.lower()]
        content = operation["responses"].get(str(status), {}).get("content", {})
        if "application/json" not in content:
            return []
        checked = _Request(request, None)
        response = _Response(status, body, "application/json", Headers(headers))
        return [_describe(e) for e in self._api.iter_response_errors(checked, response)]


def _describe(error: Exception) -> str:
    cause = error.__cause__
    detail = getattr(cause, "schema_errors", None) or cause
    return f"{type(error).__name__}: {error}" + (f" ({detail})" if detail else "")

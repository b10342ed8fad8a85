"""The API's request and response bodies (camelCase on the wire, as the TypeScript editor has).

pydantic sits at this trust boundary only: strict types, unknown fields refused.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from starlette.requests import Request

from app.errors import ApiError, bad_request
from app.validation import first_error

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
BodyT = TypeVar("BodyT", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )


class CreateSessionBody(_Body):
    project_id: uuid.UUID
    # The platform (the seed's field); `device` names a device of the catalogue on it. Either
    # alone is enough: the device picks its platform, the platform its default device.
    device_type: Literal["web", "ios", "android"] | None = None
    device: str | None = Field(default=None, pattern=NAME_PATTERN)
    template: str | None = Field(default=None, pattern=NAME_PATTERN)
    region: str | None = Field(default=None, pattern=NAME_PATTERN)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("project_id", mode="before")
    @classmethod
    def _uuid_from_text(cls, value: object) -> object:
        # Strict mode refuses strings for UUIDs; JSON has no UUID type, so parse it here.
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                raise ValueError("must be a UUID") from None
        return value

    @field_validator("options")
    @classmethod
    def _small_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Postgres jsonb refuses what json.dumps would write for inf/nan (1e400 parses as inf)
        # and NUL characters: refuse them here, not as a 500 after a machine was taken.
        try:
            text = json.dumps(value, allow_nan=False)
        except (ValueError, RecursionError):
            raise ValueError("options must be finite JSON of bounded depth") from None
        if len(text) > 4096:
            raise ValueError("at most 4 KiB of options")
        if _contains_nul(value):
            raise ValueError("options must not contain NUL characters")
        return value


def _contains_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class TierBoundsBody(_Body):
    """One lower tier's bounds (Fly pools): how many suspended or stopped machines to keep."""

    min: int = Field(ge=0, le=1000)
    max: int = Field(ge=0, le=1000)


class GuestBody(_Body):
    """The machines' size; a change rolls through the pool's ready machines."""

    cpus: int = Field(ge=1, le=16)
    memory_mb: int = Field(ge=256, le=131072)


class PoolBoundsBody(_Body):
    """`min`/`max` bound the hot tier (started machines). `suspended`, `stopped` and `guest`
    are optional; one left out keeps its stored value."""

    min: int = Field(ge=0, le=1000)
    max: int = Field(ge=0, le=1000)
    suspended: TierBoundsBody | None = None
    stopped: TierBoundsBody | None = None
    guest: GuestBody | None = None


class SessionView(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: uuid.UUID
    status: str
    project_id: uuid.UUID
    template: str
    region: str
    device_type: str
    device: str | None
    machine_id: str | None
    preview_url: str
    preview_origin: str
    ws_url: str
    token: str
    token_expires_at: datetime
    expires_at: datetime
    created_at: datetime
    last_activity: datetime


class TokenView(BaseModel):
    """A fresh session token (POST /api/preview/sessions/{id}/token)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    token: str
    token_expires_at: datetime


class ShareView(BaseModel):
    """A short-lived link that opens the preview, and only the preview, on another device."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    url: str
    expires_at: datetime


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request body as JSON, refusing oversized bodies before reading them whole."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "unsupported_media_type", "send application/json")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise ApiError(413, "payload_too_large", f"the body is limited to {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise ApiError(413, "payload_too_large", f"the body is limited to {max_bytes} bytes")
    try:
        # NaN and Infinity are not JSON; nesting deeper than the parser's recursion limit is
        # refused as malformed rather than failing with a 500.
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body is not valid JSON", "malformed_json") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(model: type[BodyT], payload: Any) -> BodyT:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise bad_request(first_error(exc, "body"), "invalid_body") from None


def parse_uuid(text: str, what: str = "session id") -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise bad_request(f"{what} must be a UUID", "invalid_id") from None

"""The API's request and response bodies (camelCase on the wire, as the TypeScript editor has).

pydantic sits at this trust boundary only: strict types, unknown fields refused.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from starlette.requests import Request

from app.devices import DEVICES
from app.errors import ApiError, bad_request
from app.validation import first_error

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
# The canonical text of a UUID, as JSON Schema's `uuid` format has it: uuid.UUID alone would
# also take braces, a `urn:uuid:` prefix or 32 bare hex digits, which the document refuses.
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# A name whose allowed values the deployment decides (PREVIEW_TEMPLATES, the regions) or the
# device catalogue does: app/openapi.py fills in the values, per application, as an enum.
CHOICES = "x-choices"
# A reference to one of EXTRA_COMPONENTS by name (pydantic would try to resolve a `$ref`).
COMPONENT = "x-component"
BodyT = TypeVar("BodyT", bound=BaseModel)


def _uuid_from_text(value: object) -> object:
    # Strict mode refuses strings for UUIDs; JSON has no UUID type, so parse it here.
    if isinstance(value, str):
        if not UUID_TEXT.fullmatch(value):
            # Its own error type: a query names it `invalid_id`, as the path's ids are.
            raise PydanticCustomError("invalid_id", "must be a UUID")
        return uuid.UUID(value)
    return value


def _integral(value: object) -> object:
    # JSON Schema's `integer` is any number with no fractional part: 5.0 and 5e0 are integers
    # to every client that validates against the document, so take them as 5.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


UuidText = Annotated[uuid.UUID, BeforeValidator(_uuid_from_text)]
Whole = Annotated[int, BeforeValidator(_integral)]
TemplateName = Annotated[str, Field(pattern=NAME_PATTERN, json_schema_extra={CHOICES: "templates"})]
RegionName = Annotated[str, Field(pattern=NAME_PATTERN, json_schema_extra={CHOICES: "regions"})]
DeviceName = Annotated[str, Field(pattern=NAME_PATTERN, json_schema_extra={CHOICES: "devices"})]
PoolName = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )


def _device_fits_platform(schema: dict[str, Any]) -> None:
    """The rule `leases` applies (a device named with a `deviceType` must be of that platform),
    stated in the document so a client sees it before the 400."""
    rules = []
    for platform in ("web", "ios", "android"):
        ids = [d.id for d in DEVICES if d.platform == platform]
        rules.append(
            {
                "if": {
                    "properties": {"deviceType": {"const": platform}},
                    "required": ["deviceType"],
                },
                "then": {"properties": {"device": {"anyOf": [{"enum": ids}, {"type": "null"}]}}},
            }
        )
    schema["allOf"] = rules


_NO_NUL = {"pattern": "^[^\\x00]*$"}
_JSON_VALUE = {COMPONENT: "JsonValue"}
# Schemas the models refer to by name that pydantic does not generate: the options are checked
# by a validator (a recursive model would stop at pydantic's recursion limit, well before the
# parser's), so the document spells out what it takes.
EXTRA_COMPONENTS: dict[str, Any] = {
    "JsonValue": {
        "description": "any JSON value with no NUL character in its strings or names",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            {"type": "string", **_NO_NUL},
            {"type": "array", "items": _JSON_VALUE},
            {
                "type": "object",
                "propertyNames": _NO_NUL,
                "additionalProperties": _JSON_VALUE,
            },
        ],
    }
}


def _options_schema(schema: dict[str, Any]) -> None:
    schema["description"] = "at most 4 KiB as JSON; no NUL characters"
    schema["propertyNames"] = _NO_NUL
    schema["additionalProperties"] = _JSON_VALUE


class CreateSessionBody(_Body):
    model_config = ConfigDict(json_schema_extra=_device_fits_platform)

    project_id: UuidText
    # The platform (the seed's field); `device` names a device of the catalogue on it. Either
    # alone is enough: the device picks its platform, the platform its default device.
    device_type: Literal["web", "ios", "android"] | None = None
    device: DeviceName | None = None
    template: TemplateName | None = None
    region: RegionName | None = None
    options: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_options_schema)
    # Start from the project's last files (what its last session held when it ended, kept for
    # PREVIEW_SNAPSHOT_RETENTION_HOURS), so the editor need not send them again. Off by
    # default: an editor that sends its files itself is not surprised by others.
    restore: bool = Field(
        default=False,
        description="start from the project's last files (the answer's `restored` says if "
        "there were any)",
    )

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

    min: Whole = Field(ge=0, le=1000)
    max: Whole = Field(ge=0, le=1000)


class GuestBody(_Body):
    """The machines' size; a change rolls through the pool's ready machines."""

    cpus: Whole = Field(ge=1, le=16)
    memory_mb: Whole = Field(ge=256, le=131072)


class PoolBoundsBody(_Body):
    """`min`/`max` bound the hot tier (started machines). `suspended`, `stopped` and `guest`
    are optional; one left out keeps its stored value. Each `min` must not exceed its `max`."""

    min: Whole = Field(ge=0, le=1000)
    max: Whole = Field(ge=0, le=1000)
    suspended: TierBoundsBody | None = None
    stopped: TierBoundsBody | None = None
    guest: GuestBody | None = None


class ListSessionsQuery(_Body):
    """GET /api/preview/sessions: an empty `projectId=` is refused, not read as "any"."""

    project_id: UuidText | None = None


class DevTokenQuery(_Body):
    admin: Literal["0", "1"] = "0"


class SessionPath(_Body):
    session_id: UuidText


class PoolPath(_Body):
    """A pool the configuration names (PUT: bounds for a made-up pool would make machines)."""

    template: TemplateName
    region: RegionName


class KnownPoolPath(_Body):
    """Any pool by name (DELETE also removes a pool of a template or region since dropped)."""

    template: PoolName
    region: PoolName


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


class RestoredView(BaseModel):
    """The files a new session started from: the project's last session's, at its end."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    from_session: uuid.UUID
    ended_at: datetime
    # The seq of the new session's log that holds them (its first patch is the next one).
    seq: int
    # The machine applied them before this answer (201); false while it boots (202: the
    # session becomes active only once they are applied) or if it took too long.
    hydrated: bool


class CreatedSessionView(SessionView):
    """A new session; `restored` is null unless it started from the project's last files."""

    restored: RestoredView | None = None


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
    expo_go_url: str | None = Field(
        default=None,
        description="`expo` sessions: the link as Expo Go opens it (exp:// or exps://, the same "
        "token; for a QR code to scan with Expo Go); null for other templates",
    )
    appetize_url: str | None = Field(
        default=None,
        description="`expo` sessions on ios or android, when the operator uploaded Expo Go to "
        "Appetize for that platform: an Appetize embed that launches Expo Go on the session "
        "(`launchUrl`); null otherwise",
    )


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class FallbackView(_View):
    """Use Appetize instead (app.rollout.fallback): the new system could not start a session."""

    backend: Literal["appetize"]
    reason: str = Field(
        description="why: pool_exhausted, boot_failed, wake_failed or repeated_failures"
    )
    appetize: dict[str, Any] | None = Field(
        description="the project's Appetize settings (publicKey, platform, device, osVersion, "
        "scale); null when it has none"
    )


class ErrorView(_View):
    """Every failure: a stable code for programs, a sentence for people; `fallback` only where
    a session could not start and the editor should show Appetize (docs/api.md)."""

    error: str
    message: str
    fallback: FallbackView | None = None


class SessionListView(_View):
    sessions: list[SessionView]


class DeviceView(_View):
    id: str
    name: str
    platform: Literal["web", "ios", "android"]
    width: int = Field(description="CSS pixels, portrait")
    height: int = Field(description="CSS pixels, portrait")
    pixel_ratio: float
    frame: Literal["phone", "tablet", "desktop"]


class DeviceCatalogueView(_View):
    devices: list[DeviceView]


class TierBoundsView(_View):
    min: int
    max: int


class GuestView(_View):
    cpus: int
    memory_mb: int


class PoolBoundsView(_View):
    """A pool's stored bounds; the lower tiers and the guest appear once set."""

    template: str
    region: str
    min: int
    max: int
    suspended: TierBoundsView | None = None
    stopped: TierBoundsView | None = None
    guest: GuestView | None = None


class PoolRemovedView(_View):
    template: str
    region: str
    min: Literal[0]
    max: Literal[0]
    removed: Literal[True]


class PoolReportView(_View):
    pools: list[dict[str, Any]] = Field(description="per (template, region): bounds and counts")


class LivenessView(_View):
    status: Literal["ok"]


class ReadinessView(_View):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="postgres, redis, worker: `ok` or `failing: ...`")


class DevTokenView(_View):
    access_token: str
    user_id: uuid.UUID
    project_id: uuid.UUID


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


def parse_query(model: type[BodyT], request: Request) -> BodyT:
    """The query string as `model` declares it: unknown or repeated parameters are refused."""
    pairs = request.query_params.multi_items()
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise bad_request(f"query parameter {repeated[0]!r} is repeated", "invalid_query")
    try:
        return model.model_validate(dict(pairs))
    except ValidationError as exc:
        code = "invalid_id" if exc.errors()[0]["type"] == "invalid_id" else "invalid_query"
        raise bad_request(first_error(exc, "query"), code) from None


def parse_uuid(text: str, what: str = "session id") -> uuid.UUID:
    if not UUID_TEXT.fullmatch(text):
        raise bad_request(f"{what} must be a UUID", "invalid_id")
    return uuid.UUID(text)

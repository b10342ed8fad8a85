"""The bodies of the Appetize arm's routes (app/routes/appetize_arm.py): the panel's reports,
checked at the trust boundary (strict, unknown fields refused, every string and number
bounded), and the answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from app.schemas import UuidText

ArmReason = Literal["flag", "percentage", "kill_switch", "fallback", "platform", "default"]
Stage = Literal["requested", "embed_loaded", "first_frame", "edit_visible", "error", "ended"]
# An hour: an edit that took longer to show was not measured, it was forgotten.
MAX_LATENCY_MS = 3_600_000
MAX_MESSAGE = 500


def _instant(value: object) -> object:
    # JSON has no time type: an ISO 8601 text with its offset (the panel's toISOString()).
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("invalid_time", "must be an ISO 8601 time") from None
        if at.tzinfo is None:
            raise PydanticCustomError("invalid_time", "must carry its UTC offset")
        return at
    return value


Instant = Annotated[datetime, BeforeValidator(_instant)]


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=False, frozen=True
    )


class ArmSessionBody(_Strict):
    """`reason`: why the panel shows Appetize (`GET /api/preview/backend`'s reason; `fallback`
    after a start failure)."""

    project_id: UuidText
    reason: ArmReason


class ArmSessionPath(_Strict):
    session_id: UuidText


class StageDetail(_Strict):
    latency_ms: float | None = Field(
        default=None, ge=0, le=MAX_LATENCY_MS, description="edit_visible: rebuild + upload + reload"
    )
    message: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE)
    event: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the Appetize message the stage was read from",
    )


def _stage_needs_detail(schema: dict[str, Any]) -> None:
    """The rule the validator applies, stated in the document so a client sees it before the
    400: edit_visible carries detail.latencyMs, error carries detail.message."""
    schema["allOf"] = [
        {
            "if": {"properties": {"stage": {"const": stage}}, "required": ["stage"]},
            "then": {
                "required": ["detail"],
                "properties": {
                    "detail": {"required": [field], "properties": {field: {"type": kind}}}
                },
            },
        }
        for stage, field, kind in (
            ("edit_visible", "latencyMs", "number"),
            ("error", "message", "string"),
        )
    ]


class ArmEventBody(_Strict):
    """One stage, as the panel saw it; `at` defaults to when it arrives."""

    model_config = ConfigDict(json_schema_extra=_stage_needs_detail)

    stage: Stage
    at: Instant | None = None
    detail: StageDetail = Field(default_factory=StageDetail)

    @model_validator(mode="after")
    def _detail_fits_stage(self) -> Self:
        if self.stage == "edit_visible" and self.detail.latency_ms is None:
            raise ValueError("edit_visible needs detail.latencyMs")
        if self.stage == "error" and self.detail.message is None:
            raise ValueError("error needs detail.message")
        return self

    def detail_json(self) -> dict[str, Any]:
        return self.detail.model_dump(by_alias=True, exclude_none=True)


class _View(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ArmSessionView(_View):
    id: uuid.UUID
    appetize: dict[str, Any] = Field(
        description="the project's Appetize settings (publicKey, platform, device, osVersion, "
        "scale)"
    )
    embed_url: str = Field(description="the Appetize embed to show (PREVIEW_APPETIZE_EMBED_URL)")


class ArmEventView(_View):
    stage: Stage
    recorded: bool = Field(description="false: the stage was already reported; the first stands")

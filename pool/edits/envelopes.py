"""What travels on the pub/sub channels: one frozen dataclass per `kind`.

    session channel (`ch:session:{id}`), heard by the session's editors and its machine's agent
        patch        an editor's patch, appended (append_patch.lua publishes what it is given)
        applied      the machine applied up to `seq` (published by the report script)
        status       the agent's state; `offline` when its socket is gone (a script)
        log, buildError, error   what the agent reported, relayed to the editors
        ended        the session ended (announce_end's script)
        idleWarning  the session ends for inactivity in `secondsLeft`
    machine channel (`ch:machine:{id}`), heard by the machine's agent socket
        assign       the machine serves a session now (promote.lua, claim_leased.lua)
        hydrate      the session's full file set (the hydrate job)

The wire format is JSON objects keyed as below, `kind` first; the envelopes published from Lua
are written there and must parse as these types. A message is parsed once where it is received
(app.realtime.hub) and dispatched on its type; every one published from Python is encoded by
`encode_envelope`. The editor and agent frames built from envelopes are docs/protocol.md's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from pool.core.errors import MalformedEnvelope


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchEnvelope:
    kind: Literal["patch"] = "patch"
    epoch: str | None = None  # None: the current epoch of the listener's log
    seq: int
    # As the editor sent them ({path, content[, encoding]} or {path, delete: true}): relayed
    # untouched.
    changes: tuple[dict[str, Any], ...]
    origin: str = ""  # the editor socket that sent it, which hears its own `ack` instead


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedEnvelope:
    kind: Literal["applied"] = "applied"
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEnvelope:
    kind: Literal["status"] = "status"
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEnvelope:
    kind: Literal["log"] = "log"
    level: str
    message: str
    source: str = "devserver"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildErrorEnvelope:
    kind: Literal["buildError"] = "buildError"
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEnvelope:
    """A patch the agent refused."""

    kind: Literal["error"] = "error"
    seq: int
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndedEnvelope:
    kind: Literal["ended"] = "ended"
    reason: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleWarningEnvelope:
    kind: Literal["idleWarning"] = "idleWarning"
    secondsLeft: int  # the wire's name


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignEnvelope:
    kind: Literal["assign"] = "assign"
    session: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HydrateEnvelope:
    kind: Literal["hydrate"] = "hydrate"
    session: str
    epoch: str | None = None  # None: the current epoch of the agent socket's session
    seq: int
    files: dict[str, str]
    deleted: tuple[str, ...] = ()
    binary: tuple[str, ...] = ()  # the `files` whose values are base64


Envelope = (
    PatchEnvelope
    | AppliedEnvelope
    | StatusEnvelope
    | LogEnvelope
    | BuildErrorEnvelope
    | ErrorEnvelope
    | EndedEnvelope
    | IdleWarningEnvelope
    | AssignEnvelope
    | HydrateEnvelope
)

_WIRE: TypeAdapter[Envelope] = TypeAdapter(Annotated[Envelope, Field(discriminator="kind")])


def parse_envelope(data: str | bytes) -> Envelope:
    """The envelope in a pub/sub message. Unknown fields are ignored (a newer publisher may add
    some); anything else that does not fit raises MalformedEnvelope."""
    try:
        return _WIRE.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the message"
        raise MalformedEnvelope(f"{where}: {first['msg']}") from exc


def fields_of(envelope: Envelope) -> dict[str, Any]:
    """The envelope's fields but `kind`, as published (shallow: file contents are not
    copied)."""
    return {f.name: getattr(envelope, f.name) for f in fields(envelope) if f.name != "kind"}


def encode_envelope(envelope: Envelope) -> str:
    return json.dumps({"kind": envelope.kind, **fields_of(envelope)}, separators=(",", ":"))

"""Frames of the sandbox socket (docs/protocol.md, "Sandbox socket"), agent side.

Incoming frames are checked here, at the trust boundary, into small dataclasses; the content
of `files` and `changes` is checked by the workspace (sandbox.agent.files), which knows the
path rules. Outgoing frames are plain dicts built by `frame`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from sandbox.agent.errors import FrameError

VERSION = 1


class Status(enum.StrEnum):
    BOOTING = "booting"
    READY = "ready"
    BUILDING = "building"
    ERROR = "error"


@dataclass(frozen=True)
class Assign:
    """Serve `session`; seqs count in `epoch` of its edit log (None from an older gateway)."""

    session: str
    epoch: str | None = None


@dataclass(frozen=True)
class Hydrate:
    """The session's files at `seq`: the template's files, overlaid with `files`, without the
    paths in `deleted` (template files the editor deleted). The `files` named in `binary` are
    base64."""

    session: str
    seq: int
    files: object
    deleted: object = ()
    epoch: str | None = None
    binary: object = ()


@dataclass(frozen=True)
class Patch:
    seq: int
    changes: object


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class ServerError:
    code: str
    message: str


ServerFrame = Assign | Hydrate | Patch | Ping | Pong | ServerError


def frame(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": kind, **fields}


def parse_server_frame(text: str | bytes) -> ServerFrame:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FrameError(f"malformed JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FrameError("a frame must be a JSON object")
    if raw.get("v") != VERSION:
        raise FrameError(f"unsupported protocol version {raw.get('v')!r}")
    kind = raw.get("type")
    if kind == "patch":
        return Patch(seq=_seq(raw), changes=raw.get("changes"))
    if kind == "hydrate":
        return Hydrate(
            session=_text(raw, "session"),
            seq=_seq(raw),
            files=raw.get("files"),
            deleted=raw.get("deleted", ()),
            epoch=_epoch(raw),
            binary=raw.get("binary", ()),
        )
    if kind == "assign":
        return Assign(session=_text(raw, "session"), epoch=_epoch(raw))
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    if kind == "error":
        return ServerError(code=str(raw.get("code")), message=str(raw.get("message")))
    raise FrameError(f"unknown frame type {kind!r}")


def _seq(raw: dict[str, Any]) -> int:
    seq = raw.get("seq")
    # bool is an int in Python; JSON true is not a sequence number.
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise FrameError(f"seq must be an integer >= 0, not {seq!r}")
    return seq


def _epoch(raw: dict[str, Any]) -> str | None:
    value = raw.get("epoch")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise FrameError(f"epoch must be a short string, not {value!r}")
    return value


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise FrameError(f"{name} must be a non-empty string")
    return value

"""Frames of protocol version 1 (docs/protocol.md), validated at the socket boundary.

Paths are checked here before anything is appended: relative, at most 256 bytes of UTF-8, no
`..` segment, no backslash or NUL, no empty or `.` segments. The agent checks again on the
machine (it trusts nothing), and also refuses symlink escapes, which only it can see.

A change's content is text, or, with `encoding: "base64"`, a binary file (an image, a font) as
standard base64 (RFC 4648: padding required, no whitespace, canonical); its size cap counts the
decoded bytes. The agent decodes and checks it again.

JSON is read more strictly than Python's `json` reads it: `"v": true` is not version 1 (a bool
is an int to Python, and `1.0 == 1`), and a string with a lone surrogate (`"\ud800"`, legal
JSON syntax but no Unicode text) is refused as malformed, since it cannot be stored as UTF-8.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from app.validation import first_error

PROTOCOL_VERSION = 1
MAX_FILE_BYTES = 512 * 1024
MAX_CHANGES = 2000
MAX_PATH_BYTES = 256
# The longest base64 text of a file within MAX_FILE_BYTES: refused before decoding anything.
MAX_BASE64_CHARS = 4 * -(-MAX_FILE_BYTES // 3)
# A `\uD800`-`\uDFFF` escape: the only way a lone surrogate gets into a str from a socket's
# (valid UTF-8) text. Pairs are legal (Python's json.dumps writes emoji so), so a hit is only a
# reason to look closer.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class FrameError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]


def check_path(path: str) -> str:
    encoded = path.encode("utf-8", errors="strict")
    if not path or len(encoded) > MAX_PATH_BYTES:
        raise ValueError("a path is 1 to 256 bytes")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError("paths are relative, without backslashes or NUL")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError("paths have no empty, '.' or '..' segments")
    return path


class FileChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    path: str
    content: str | None = None
    delete: Literal[True] | None = None
    encoding: Literal["base64"] | None = None  # absent: content is the file's text

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("delete", mode="before")
    @classmethod
    def _true(cls, value: object) -> object:
        # Literal[True] compares with ==, so 1 would pass for true.
        if value is not None and value is not True:
            raise ValueError("delete is true or absent")
        return value

    def model_post_init(self, context: Any) -> None:
        if (self.content is None) == (self.delete is None):
            raise ValueError("a change has either content or delete: true")
        if self.content is None:
            if self.encoding is not None:
                raise ValueError("a deletion has no encoding")
        elif self.encoding == "base64":
            _check_base64(self.content)
        else:
            _check_text(self.content)


def _check_text(content: str) -> None:
    if len(content.encode("utf-8", errors="surrogatepass")) > MAX_FILE_BYTES:
        raise ValueError(f"a file is at most {MAX_FILE_BYTES} bytes")
    # NUL marks a deletion in the snapshot (pool.edits.edit_log.TOMBSTONE); a binary file
    # holding NUL comes as base64.
    if "\x00" in content:
        raise ValueError("text content must not contain NUL (send binary files as base64)")


def _check_base64(content: str) -> None:
    if len(content) > MAX_BASE64_CHARS:
        raise ValueError(f"a file is at most {MAX_FILE_BYTES} bytes (decoded)")
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content is not base64 (RFC 4648, padded, no whitespace)") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"a file is at most {MAX_FILE_BYTES} bytes (decoded)")
    # Only one text per file: "QR==" decodes like "QQ==", but a resend must digest the same.
    if base64.b64encode(data).decode("ascii") != content:
        raise ValueError("content is not canonical base64 (unused bits must be zero)")


# An edit log's epoch (pool.edits.edit_log.new_epoch): what the editor or agent last heard.
Epoch = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")]


class EditorHello(_Frame):
    type: Literal["hello"]
    lastSeq: int = Field(ge=0)
    epoch: Epoch | None = None


class EditorPatch(_Frame):
    type: Literal["patch"]
    seq: int = Field(ge=1)
    epoch: Epoch | None = None
    changes: list[FileChange] = Field(min_length=1, max_length=MAX_CHANGES)

    @field_validator("changes")
    @classmethod
    def _each_path_once(cls, changes: list[FileChange]) -> list[FileChange]:
        # The edit log accounts each change against the file's stored size: the same path
        # twice in one patch would subtract the old size twice and let the session's byte
        # count (and the user's budget) go below what Redis holds.
        seen: set[str] = set()
        for change in changes:
            if change.path in seen:
                raise ValueError(f"{change.path!r} appears twice in one patch")
            seen.add(change.path)
        return changes


class Ping(_Frame):
    type: Literal["ping"]


EditorFrame = Annotated[EditorHello | EditorPatch | Ping, Field(discriminator="type")]


class AgentHello(_Frame):
    type: Literal["hello"]
    machineId: str = Field(max_length=64)
    session: str | None = Field(default=None, max_length=64)
    appliedSeq: int = Field(default=0, ge=0)
    epoch: Epoch | None = None


class AgentApplied(_Frame):
    type: Literal["applied"]
    seq: int = Field(ge=0)


class AgentStatus(_Frame):
    type: Literal["status"]
    state: Literal["booting", "ready", "building", "error"]
    detail: str = Field(default="", max_length=2000)


class AgentBuildError(_Frame):
    type: Literal["buildError"]
    message: str = Field(max_length=20_000)
    file: str | None = Field(default=None, max_length=512)
    line: int | None = None
    column: int | None = None


class AgentLog(_Frame):
    type: Literal["log"]
    level: Literal["debug", "info", "log", "warn", "error"]
    message: str = Field(max_length=20_000)
    source: Literal["page", "devserver"] = "devserver"


class AgentRejected(_Frame):
    type: Literal["rejected"]
    seq: int = Field(ge=0)
    code: str = Field(max_length=64)
    message: str = Field(max_length=2000)


# Bounds of the `stats` figures: far above any real machine's (a billion restarts; 64 CPUs busy
# for five years; a pebibyte), well inside what a float holds exactly enough.
MAX_RESTARTS = 1_000_000_000
MAX_CPU_SECONDS = 1e10
MAX_MEMORY_BYTES = 1 << 50


class AgentStats(_Frame):
    """The machine's own report (sandbox.agent.stats): totals since the agent started.
    CPU and memory come together or not at all (the agent could not read them)."""

    type: Literal["stats"]
    devserverRestarts: int = Field(ge=0, le=MAX_RESTARTS)
    cpuSeconds: float | None = Field(default=None, ge=0, le=MAX_CPU_SECONDS, allow_inf_nan=False)
    memoryBytes: int | None = Field(default=None, ge=0, le=MAX_MEMORY_BYTES)

    def model_post_init(self, context: Any) -> None:
        if (self.cpuSeconds is None) != (self.memoryBytes is None):
            raise ValueError("cpuSeconds and memoryBytes come together")


AgentFrame = Annotated[
    AgentHello
    | AgentApplied
    | AgentStatus
    | AgentBuildError
    | AgentLog
    | AgentRejected
    | AgentStats
    | Ping,
    Field(discriminator="type"),
]

_EDITOR = TypeAdapter(EditorFrame)
_AGENT = TypeAdapter(AgentFrame)


def _parse(adapter: TypeAdapter[Any], text: str) -> Any:
    try:
        payload = json.loads(text)
    except ValueError:
        raise FrameError("malformed", "the frame is not valid JSON") from None
    if not isinstance(payload, dict):
        raise FrameError("malformed", "a frame is a JSON object")
    version = payload.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise FrameError("unsupported_version", f"protocol version {PROTOCOL_VERSION} expected")
    if _SURROGATE_ESCAPE.search(text) and not _is_unicode(payload):
        raise FrameError("malformed", "a string in the frame holds a lone surrogate (not UTF-8)")
    try:
        return adapter.validate_python(payload)
    except ValidationError as exc:
        raise FrameError("invalid_frame", first_error(exc, "frame")) from None


def _is_unicode(payload: Any) -> bool:
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_editor_frame(text: str) -> EditorHello | EditorPatch | Ping:
    frame: EditorHello | EditorPatch | Ping = _parse(_EDITOR, text)
    return frame


def parse_agent_frame(text: str) -> Any:
    return _parse(_AGENT, text)


def frame(kind: str, **fields: Any) -> str:
    return json.dumps({"v": PROTOCOL_VERSION, "type": kind, **fields}, separators=(",", ":"))

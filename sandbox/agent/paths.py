"""What a file name in a hydrate or patch may be, and how big its content may grow.

Pure checks on the name alone; whether the name is safe on this disk (no symlink on the way,
no file where a directory must be) is the workspace's job at write time. The limits follow
docs/protocol.md.
"""

from __future__ import annotations

import base64
import binascii
import enum

from sandbox.agent.errors import PatchRejected

MAX_PATH_BYTES = 256
MAX_FILE_BYTES = 512 * 1024
MAX_FILES = 2000
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# A binary file's content is base64 (RFC 4648, padded, no whitespace); the caps count its bytes.
BASE64 = "base64"
MAX_BASE64_CHARS = 4 * -(-MAX_FILE_BYTES // 3)

# Top-level names the agent owns: the shared dependencies (a symlink), the dev server's cache
# and state, and the agent's own state. A project file can never live there.
NODE_MODULES = "node_modules"
VITE_CACHE = ".vite"
AGENT_DIR = ".preview-agent"
# Expo CLI's own state (devices, settings) in the `expo` template's project root.
EXPO_STATE = ".expo"
RESERVED_NAMES = frozenset({NODE_MODULES, VITE_CACHE, AGENT_DIR, EXPO_STATE})


class RejectCode(enum.StrEnum):
    INVALID_PATH = "invalid_path"
    RESERVED_PATH = "reserved_path"
    SYMLINK = "symlink_escape"
    TOO_LARGE = "too_large"
    TOO_MANY_FILES = "too_many_files"
    INVALID_CHANGE = "invalid_change"


def check_path(path: object) -> str:
    """Return `path` if it is an acceptable workspace-relative file name, else raise."""
    if not isinstance(path, str) or not path:
        raise PatchRejected(RejectCode.INVALID_PATH, "a path must be a non-empty string")
    shown = repr(path[:80])
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise PatchRejected(RejectCode.INVALID_PATH, f"{shown} is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise PatchRejected(
            RejectCode.INVALID_PATH, f"{shown} is longer than {MAX_PATH_BYTES} bytes"
        )
    if "\\" in path:
        raise PatchRejected(RejectCode.INVALID_PATH, f"{shown} contains a backslash")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise PatchRejected(RejectCode.INVALID_PATH, f"{shown} contains a control character")
    if path.startswith("/"):
        raise PatchRejected(RejectCode.INVALID_PATH, f"{shown} is absolute")
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise PatchRejected(RejectCode.INVALID_PATH, f"{shown} has an empty, '.' or '..' segment")
    if segments[0] in RESERVED_NAMES:
        raise PatchRejected(RejectCode.RESERVED_PATH, f"{shown} is inside {segments[0]}/")
    return path


def encode_content(path: str, content: object) -> bytes:
    """The bytes to write for a file's content, within the size cap."""
    try:
        data = _content_string(path, content).encode("utf-8")
    except UnicodeEncodeError:
        raise PatchRejected(
            RejectCode.INVALID_CHANGE, f"content of {path!r} is not valid UTF-8"
        ) from None
    return _within_cap(path, data)


def decode_content(path: str, content: object) -> bytes:
    """The bytes of a binary file's base64 content, within the size cap."""
    text = _content_string(path, content)
    if len(text) > MAX_BASE64_CHARS:
        # Refused before decoding: a hostile frame costs no more than its length.
        raise PatchRejected(RejectCode.TOO_LARGE, f"{path!r} is over {MAX_FILE_BYTES} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PatchRejected(
            RejectCode.INVALID_CHANGE, f"content of {path!r} is not padded base64"
        ) from None
    return _within_cap(path, data)


def _content_string(path: str, content: object) -> str:
    if not isinstance(content, str):
        raise PatchRejected(RejectCode.INVALID_CHANGE, f"content of {path!r} is not a string")
    return content


def _within_cap(path: str, data: bytes) -> bytes:
    if len(data) > MAX_FILE_BYTES:
        raise PatchRejected(
            RejectCode.TOO_LARGE, f"{path!r} is {len(data)} bytes, over {MAX_FILE_BYTES}"
        )
    return data


def check_no_nesting(paths: list[str]) -> None:
    """Refuse a set in which one file would have to be the directory of another."""
    names = set(paths)
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in names:
                raise PatchRejected(
                    RejectCode.INVALID_PATH, f"{parent!r} cannot be both a file and a directory"
                )

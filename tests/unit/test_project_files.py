"""Which kept files may start a session (pool.services.project_files.restorable_values): the
caps an append would apply, and the signs of a corrupted row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pool.edits.edit_log import EditLogLimits
from pool.services.project_files import UnrestorableFiles, restorable_values
from sql.project_files import StoredFiles

LIMITS = EditLogLimits(snapshot_bytes=16, snapshot_files=3)


def stored(*entries: tuple[str, bytes]) -> StoredFiles:
    return StoredFiles(uuid.uuid4(), uuid.uuid4(), 4, list(entries), datetime.now(UTC))


def test_values_come_back_as_they_were_kept_tombstones_included() -> None:
    values = restorable_values(
        stored(("src/App.jsx", "é✓".encode()), ("index.html", b"\x00"), ("a", b"")), LIMITS
    )
    assert values == {"src/App.jsx": "é✓", "index.html": "\x00", "a": ""}


def test_the_caps_count_bytes_as_append_patch_lua_does() -> None:
    # 16 bytes exactly is allowed; a multi-byte character counts its UTF-8 bytes.
    assert restorable_values(stored(("a", b"x" * 16)), LIMITS) == {"a": "x" * 16}
    with pytest.raises(UnrestorableFiles, match="17 bytes"):
        restorable_values(stored(("a", "é".encode() * 8 + b"x")), LIMITS)


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")], "4 files"),
        ([("a", b"1"), ("a", b"2")], "a path appears twice"),
        ([("a", b"\xff\xfe")], "not UTF-8"),
        ([("a", b"x" * 17)], "17 bytes"),
    ],
)
def test_what_cannot_start_a_session_is_refused(entries: list[tuple[str, bytes]], why: str) -> None:
    with pytest.raises(UnrestorableFiles, match=why):
        restorable_values(stored(*entries), LIMITS)

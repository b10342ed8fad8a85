from __future__ import annotations

import pytest

from sandbox.agent.errors import PatchRejected
from sandbox.agent.files import Write, overlay, parse_deleted

TEMPLATE = [
    Write("index.html", b"<div id=root>"),
    Write("src/App.jsx", b"template"),
    Write("src/logo.svg", b"<svg/>"),
]


def test_the_session_is_template_plus_files_minus_deleted() -> None:
    merged = overlay(
        TEMPLATE, [Write("src/App.jsx", b"mine"), Write("src/extra.js", b"x")], {"src/logo.svg"}
    )
    assert {w.path: w.data for w in merged} == {
        "index.html": b"<div id=root>",
        "src/App.jsx": b"mine",
        "src/extra.js": b"x",
    }


@pytest.mark.parametrize("raw", ["src/a.js", [1], ["../x"], ["/etc/passwd"], {"a": 1}])
def test_bad_deleted_lists_are_refused(raw: object) -> None:
    with pytest.raises(PatchRejected):
        parse_deleted(raw)


def test_a_file_under_a_file_is_refused() -> None:
    with pytest.raises(PatchRejected):
        overlay(TEMPLATE, [Write("index.html/nested.js", b"")], set())

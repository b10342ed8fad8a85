"""The Fly OpenAPI document the fake is checked against ships with the checkout, unmodified."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.fakes.openapi_check import DEFAULT_SPEC, spec_path


def test_the_stored_document_is_the_one_its_provenance_note_names() -> None:
    note = (DEFAULT_SPEC.parent / "machines-openapi3.SOURCE.md").read_text()
    match = re.search(r"sha256 ([0-9a-f]{64})", note)
    assert match, "the provenance note lost its sha256"
    assert hashlib.sha256(DEFAULT_SPEC.read_bytes()).hexdigest() == match.group(1)


def test_the_document_is_found_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLY_OPENAPI_SPEC", raising=False)
    assert spec_path() == DEFAULT_SPEC


def test_a_configured_path_that_is_missing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    monkeypatch.setenv("FLY_OPENAPI_SPEC", str(missing))
    with pytest.raises(FileNotFoundError, match=r"FLY_OPENAPI_SPEC names it.*docs\.machines\.dev"):
        spec_path()

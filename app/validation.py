"""How a pydantic validation error is put to a client: the first thing wrong and where, in one
line ("guest.cpus: Input should be less than or equal to 16"), the same at every door."""

from __future__ import annotations

from pydantic import ValidationError


def first_error(exc: ValidationError, whole: str) -> str:
    """`whole` names the input when the error is about all of it (not a JSON object)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}"

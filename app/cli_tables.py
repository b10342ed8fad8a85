"""Aligned text tables for the operator commands (`--json` prints the rows as they are)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """One line per row under a header line, each column as wide as its widest cell; numbers
    right-aligned, text left-aligned. `(none)` under the header when there are no rows."""
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)
    ]
    numeric = [
        bool(rows) and all(isinstance(row.get(c), int | float | None) for row in rows)
        for c in columns
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(columns), *(line(values) for values in cells)]
    if not rows:
        out.append("(none)")
    return "\n".join(out)

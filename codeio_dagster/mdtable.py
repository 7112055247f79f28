"""The one way the project writes a markdown table (dataset card, asset metadata)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def md_escape(text: str) -> str:
    """Text that stays inside one table cell: `|` escaped, line breaks shown as ⏎."""
    return str(text).replace("|", "\\|").replace("\r\n", " ⏎ ").replace("\n", " ⏎ ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; cells are shown as given (None as empty), escaped to stay in their cell.

    Cells the caller formats itself (backticks, `<br>`) are kept; only `|` and line breaks,
    which would break the row, are escaped.
    """
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, the header {len(header)}: {row!r}")
        cells = ("" if cell is None else md_escape(cell) for cell in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

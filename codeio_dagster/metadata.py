"""The counters every stage reports (rows_in, kept, dropped_<reason>) as Dagster metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl


def status_counts(frame: pl.DataFrame, column: str = "status") -> dict[str, int]:
    if frame.is_empty():
        return {}
    counts = frame.group_by(column).len().sort(column)
    return {str(k): int(v) for k, v in counts.iter_rows()}


def funnel(rows_in: int, frame: pl.DataFrame, *, kept_status: str = "ok") -> dict[str, int]:
    """rows_in, kept and one dropped_<reason> per non-kept status."""
    counts = status_counts(frame)
    result = {"rows_in": rows_in, "kept": counts.pop(kept_status, 0)}
    result.update({f"dropped_{reason}": n for reason, n in counts.items()})
    return result


def outcome_counts(rows_in: int, frame: pl.DataFrame, *, prefix: str) -> dict[str, int]:
    """For a stage that labels rows but drops none: rows_in, kept (every row) and
    <prefix><status> per status."""
    result = {"rows_in": rows_in, "kept": frame.height}
    result.update({f"{prefix}{status}": n for status, n in status_counts(frame).items()})
    return result


def markdown_table(
    frame: pl.DataFrame, columns: list[str], *, limit: int = 3, width: int = 80
) -> str:
    """A few rows as a markdown table, long cells shortened so the UI stays readable."""
    if frame.is_empty():
        return "_no rows_"
    rows = frame.select(columns).head(limit).iter_rows()

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ⏎ ")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def stage_metadata(
    counters: dict[str, int],
    *,
    sample: pl.DataFrame | None = None,
    sample_columns: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counters plus a drop-reason table and sample rows, in the form the UI shows well."""
    meta: dict[str, Any] = dict(counters)
    drops = {k.removeprefix("dropped_"): v for k, v in counters.items() if k.startswith("dropped_")}
    if drops:
        table = "| reason | rows |\n|---|---|\n" + "\n".join(
            f"| {k} | {v} |" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])
        )
        meta["drop_reasons"] = dg.MetadataValue.md(table)
    if sample is not None and sample_columns:
        meta["sample_rows"] = dg.MetadataValue.md(markdown_table(sample, sample_columns))
    meta.update(extra or {})
    return meta

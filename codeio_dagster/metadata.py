"""What every stage reports as Dagster metadata: counters (rows_in, kept, dropped_<reason>), a
drop-reason table with example errors, sample rows, and for LLM stages the model and backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import polars as pl

from codeio_dagster.mdtable import md_table

# Cells of these columns end with what matters (the final answer of a reply, the revised
# answer): a long one keeps its end. Other long cells keep their start.
TAIL_COLUMNS = frozenset({"content", "turn_1", "turn_2", "reply"})
ID_COLUMNS = frozenset({"task_id", "function_id", "file_id", "request_hash"})
CELL_WIDTH = 240
ID_WIDTH = 10
EXAMPLES_PER_REASON = 2


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


def short_error(text: str, width: int = 200) -> str:
    """The line of an error that names it: a traceback's last non-empty line, shortened."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def example_errors(
    frame: pl.DataFrame,
    detail: str,
    *,
    status: str = "status",
    kept: tuple[str, ...] = ("ok",),
    limit: int = EXAMPLES_PER_REASON,
) -> dict[str, list[str]]:
    """Up to `limit` distinct example errors (column `detail`) for each non-kept status."""
    if frame.is_empty() or detail not in frame.columns:
        return {}
    failed = frame.filter(~pl.col(status).is_in(list(kept)) & pl.col(detail).is_not_null())
    examples: dict[str, list[str]] = {}
    for reason, text in failed.select(status, detail).iter_rows():
        seen = examples.setdefault(str(reason), [])
        short = short_error(text)
        if len(seen) < limit and short and short not in seen:
            seen.append(short)
    return examples


def cell(value: Any, column: str = "", width: int = CELL_WIDTH) -> str:
    """A table cell's text: ids shortened, long text cut at the end that matters less
    (`md_table` escapes it)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if column in ID_COLUMNS and len(text) > ID_WIDTH:
        return text[:ID_WIDTH] + "…"
    text = " ".join(text.split()) if column in TAIL_COLUMNS else text
    if len(text) > width:
        text = "…" + text[-(width - 1) :] if column in TAIL_COLUMNS else text[: width - 1] + "…"
    return text


def markdown_table(
    frame: pl.DataFrame, columns: list[str], *, limit: int = 3, width: int = CELL_WIDTH
) -> str:
    """A few rows as a markdown table, long cells shortened so the UI stays readable."""
    if frame.is_empty():
        return "_no rows_"
    rows = frame.select(columns).head(limit).iter_rows()
    return md_table(
        columns, [[cell(v, c, width) for v, c in zip(row, columns, strict=True)] for row in rows]
    )


def drop_reason_table(
    counters: Mapping[str, int],
    examples: Mapping[str, list[str]] | None = None,
    *,
    prefix: str = "dropped_",
    header: tuple[str, str, str] = ("reason", "rows", "example errors"),
) -> str | None:
    """| reason | rows | example errors |, largest first; None when nothing was dropped."""
    drops = {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}
    drops = {k: v for k, v in drops.items() if v}
    if not drops:
        return None
    examples = examples or {}
    rows = [
        (reason, n, "<br>".join(f"`{e}`" for e in examples.get(reason, [])))
        for reason, n in sorted(drops.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return md_table(header, rows)


def stage_metadata(
    counters: dict[str, int],
    *,
    sample: pl.DataFrame | None = None,
    sample_columns: list[str] | None = None,
    examples: Mapping[str, list[str]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Counters plus a drop-reason table (with example errors) and sample rows, in the form the
    UI shows well."""
    meta: dict[str, Any] = dict(counters)
    table = drop_reason_table(counters, examples)
    if table:
        meta["drop_reasons"] = dg.MetadataValue.md(table)
    if sample is not None and sample_columns:
        meta["sample_rows"] = dg.MetadataValue.md(markdown_table(sample, sample_columns))
    meta.update(extra or {})
    return meta


def per_call_counters(counts_json: list[str | None]) -> dict[str, int]:
    """The sandbox's per-call counters of every function of a shard, added up
    (generator_calls, generator_errors, main_solution_calls, dropped_<why> per call, ...), as
    `calls.<name>` so they are never read as row counts; counters that stayed 0 are left out."""
    total: dict[str, int] = {}
    for text in counts_json:
        for key, n in (json.loads(text) if text else {}).items():
            if isinstance(n, int | float):
                total[key] = total.get(key, 0) + int(n)
    return {f"calls.{k}": v for k, v in sorted(total.items()) if v}


def io_pairs_metadata(rows_in: int, frame: pl.DataFrame) -> dict[str, Any]:
    """io_pairs' report: counters, drop reasons with example errors, the per-call counters and
    sample rows showing a first input and its output."""
    kept = frame.filter(pl.col("status") == "ok")
    first = pl.col("pairs").list.first().struct
    sample = kept.with_columns(first.field("input"), first.field("output"))
    calls = per_call_counters(frame.get_column("counts").to_list()) if frame.height else {}
    return stage_metadata(
        funnel(rows_in, frame),
        sample=sample,
        sample_columns=["function_id", "input", "output"],
        examples=example_errors(frame, "detail"),
        extra={
            "pairs": int(kept.get_column("pairs").list.len().sum() or 0),
            **calls,
        },
    )


def llm_metadata(llm: Any, frame: pl.DataFrame) -> dict[str, str]:
    """Which model answered and through what: model ids as the replies name them (the embedded
    one with its weights hash) and the backend (`llama.cpp` for the embedded model, the host of
    a remote endpoint; never a key)."""
    models = (
        sorted(m for m in frame.get_column("model").unique().to_list() if m)
        if "model" in frame.columns
        else []
    )
    # The resource holds its `llm:` section whole; only a remote endpoint sets base_url.
    base_url = llm.settings.base_url
    if base_url:
        parts = urlsplit(str(base_url))
        backend = f"openai-compatible endpoint at {parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
    else:
        backend = "llama.cpp (embedded model on 127.0.0.1)"
        if not models:
            from codeio_dagster.llm import embedded_model_id

            models = [embedded_model_id()]
    return {"model": ", ".join(models) or "unknown", "backend": backend}

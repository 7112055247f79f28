"""The funnel from raw files to samples, computed from the stage tables themselves."""

from __future__ import annotations

import polars as pl

from codeio_dagster.turns import verdicts_name


def _ok(frame: pl.DataFrame | None, status: str = "ok") -> int:
    return 0 if frame is None else frame.filter(pl.col("status") == status).height


def compute_funnel(tables: dict[str, pl.DataFrame], turns: int) -> dict[str, int]:
    """Counts per stage; a missing table (stage not run yet) counts as zero."""
    io = tables.get("io_pairs")
    pairs = 0
    if io is not None and not io.is_empty():
        pairs = int(io.filter(pl.col("status") == "ok").get_column("pairs").list.len().sum() or 0)
    correct_first = _ok(tables.get("verdicts"), "correct")
    correct_later = sum(_ok(tables.get(verdicts_name(t)), "correct") for t in range(1, turns + 1))
    return {
        "raw_files": 0 if tables.get("raw_code") is None else tables["raw_code"].height,
        "readable_files": _ok(tables.get("raw_code")),
        "functions": _ok(tables.get("unified_functions")),
        "functions_with_pairs": _ok(io),
        "io_pairs": pairs,
        "tasks": _ok(tables.get("prediction_tasks")),
        "correct_turn_0": correct_first,
        "correct_after_revision": correct_first + correct_later,
        "codeio_rows": 0
        if tables.get("codeio_dataset") is None
        else tables["codeio_dataset"].height,
        "codeio_pp_rows": 0
        if tables.get("codeio_pp_dataset") is None
        else tables["codeio_pp_dataset"].height,
    }


def load_tables(asset_dir, shards: list[str], names: list[str]) -> dict[str, pl.DataFrame]:
    """The stored partitions of the named assets, concatenated over shards."""
    from codeio_dagster.io_manager import partition_path

    tables = {}
    for name in names:
        paths = [partition_path(asset_dir, name, s) for s in shards]
        paths = [p for p in paths if p.exists()]
        if paths:
            tables[name] = pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")
    return tables

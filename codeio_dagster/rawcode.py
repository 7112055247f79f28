"""Deciding which landed files are readable source code, and why the others are not."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from codeio_dagster.models import RawFileRecord, to_frame


def classify(content: bytes, *, duplicate_of: str | None, max_bytes: int) -> tuple[str, str | None]:
    """The status of one raw file and its text when it is usable."""
    if duplicate_of is not None:
        return "duplicate", None
    if not content.strip():
        return "empty", None
    if len(content) > max_bytes:
        return "oversized", None
    if b"\x00" in content:
        return "binary", None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return "bad_encoding", None
    return "ok", text.lstrip("\ufeff")


def classify_landed(landed: pl.DataFrame, *, max_bytes: int) -> pl.DataFrame:
    """RawFileRecord rows for a landed shard (shards are small: a few hundred files)."""
    records = []
    for row in landed.iter_rows(named=True):
        content: bytes = row["content"] or b""
        # Shards landed before sources could reject a file have no `rejected` column.
        rejected, detail = row.get("rejected"), row.get("detail")
        if rejected is not None:
            status, text = rejected, None
        else:
            status, text = classify(content, duplicate_of=row["duplicate_of"], max_bytes=max_bytes)
        if status == "oversized" and detail is None:
            detail = f"{len(content)} bytes, over shards.max_file_bytes={max_bytes}"
        size = row.get("size_bytes")
        origin = json.loads(row["origin"] or "{}")
        records.append(
            RawFileRecord(
                file_id=row["file_id"],
                shard=row["shard"],
                source=row["source"],
                path=row["path"],
                origin=json.dumps(origin, sort_keys=True),
                size_bytes=len(content) if size is None else size,
                duplicate_of=row["duplicate_of"],
                content=text,
                status=status,
                detail=detail,
            )
        )
    return to_frame(records, RawFileRecord)


def landing_metadata(record: dict[str, Any] | None) -> dict[str, Any]:
    """`source.*` metadata from a shard's landing record (`Landing.read_record`): what the
    source counted and how long it read while it filled the shard, and its provenance.

    Prefixed, so they are never read as raw_code's own counters: the source counts what it
    read and rejected; raw_code counts what of the landed rows is usable code."""
    if record is None:
        return {"source.record": "none (landed without a landing record)"}
    meta: dict[str, Any] = {f"source.{key}": n for key, n in record["counters"].items()}
    meta["source.rows_landed"] = record["rows_landed"]
    meta["source.seconds"] = record["seconds"]
    meta["source.provenance"] = record["provenance"]
    return meta

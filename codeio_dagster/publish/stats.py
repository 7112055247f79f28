"""The stats files of a published repo: one small record per shard plus running totals, so
publishing a shard reads and writes a fixed number of small files however many shards the repo
holds. The card (`card.py`) is rendered from the totals."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from codeio_dagster.publish.card import CardInfo

# One small record per shard plus running totals: publishing a shard reads and writes a fixed
# number of small files, however many shards the repo holds. The card is rendered from the
# totals. LEGACY_INDEX_PATH is the single index of every shard that earlier versions rewrote
# on every publication; a repo that has it is converted once.
SHARDS_DIR = "stats/shards"
SUMMARY_PATH = "stats/summary.json"
LEGACY_INDEX_PATH = "stats/shards.json"
SUMMARY_FORMAT = 1
RECENT_SHARDS = 10


def data_path(config: str, shard: str) -> str:
    return f"data/{config}/{shard}.parquet"


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, statistics=True)
    return buf.getvalue()


def shard_stats(shard: str, tables: Mapping[str, pl.DataFrame], info: CardInfo) -> dict[str, Any]:
    """The stats record kept for one shard in the repo's stats index."""
    return {
        "shard": shard,
        "rows": {name: frame.height for name, frame in tables.items()},
        "files": {name: data_path(name, shard) for name in tables},
        "info": info.model_dump(mode="json"),
    }


def shard_record_path(shard: str) -> str:
    """Where one shard's stats record lives in the repo (one small file per shard)."""
    return f"{SHARDS_DIR}/{shard}.json"


def empty_summary() -> dict[str, Any]:
    return {
        "format": SUMMARY_FORMAT,
        "shards": 0,
        "rows": {},
        "config_shards": {},
        "funnel": {},
        "recent": [],
    }


def _add(counts: dict[str, int], more: Mapping[str, Any], sign: int, drop_zero=False) -> None:
    for key, value in more.items():
        counts[key] = counts.get(key, 0) + sign * int(value)
        if drop_zero and not counts[key]:
            del counts[key]


def update_summary(
    summary: Mapping[str, Any] | None, old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> dict[str, Any]:
    """The repo's running totals after one shard's record `new` replaces its record `old`
    (None when the shard is new): the cost is one shard's, however many were published before."""
    out = json.loads(json.dumps(summary)) if summary else empty_summary()
    if out.get("format") != SUMMARY_FORMAT or not isinstance(out.get("rows"), dict):
        raise ValueError(f"{SUMMARY_PATH} is not a codeio summary (format {SUMMARY_FORMAT})")
    for record, sign in ((old, -1), (new, 1)):
        if record is None:
            continue
        out["shards"] += sign
        _add(out["rows"], record["rows"], sign)
        _add(out["config_shards"], {name: 1 for name in record["files"]}, sign, drop_zero=True)
        _add(out["funnel"], record["info"].get("funnel", {}), sign)
    recent = [r for r in out["recent"] if r["shard"] != new["shard"]]
    recent.append(
        {
            "shard": new["shard"],
            "rows": new["rows"],
            "project_version": new["info"].get("project_version", "?"),
        }
    )
    out["recent"] = recent[-RECENT_SHARDS:]
    return out


def summary_from_legacy(index_text: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The summary and per-shard records of a repo that kept every shard in one stats index
    (`stats/shards.json`, written by earlier versions): read once, then never again."""
    index = json.loads(index_text)
    if not isinstance(index.get("shards"), dict):
        raise ValueError(
            f"{LEGACY_INDEX_PATH} has no 'shards' mapping; it was not written by codeio"
        )
    summary: dict[str, Any] | None = None
    for record in index["shards"].values():
        summary = update_summary(summary, None, record)
    return summary or empty_summary(), dict(index["shards"])


def dump_json(data: Mapping[str, Any]) -> bytes:
    # Keys keep their order: the funnel's stages are listed as the pipeline runs them.
    return (json.dumps(data, indent=2) + "\n").encode()

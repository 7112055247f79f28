"""The files one shard's commit writes to a published repo (a Hub dataset repo or a folder laid
out like one), and the stale files it deletes: pure, shared by every publisher."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping

import polars as pl

from codeio_dagster.publish.card import CardInfo, CardStatic, render_card
from codeio_dagster.publish.stats import (
    LEGACY_INDEX_PATH,
    SUMMARY_PATH,
    data_path,
    dump_json,
    parquet_bytes,
    shard_record_path,
    shard_stats,
    summary_from_legacy,
    update_summary,
)

_SHARD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"


def check_shard(shard: str) -> str:
    if not isinstance(shard, str) or not _SHARD_RE.fullmatch(shard) or ".." in shard:
        raise ValueError(
            f"shard key {shard!r} cannot name a file: use letters, digits, '.', '_' or '-'"
        )
    return shard


def usable_tables(tables: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    out = {}
    for name, frame in tables.items():
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(
                f"table {name!r} must be a polars DataFrame, got {type(frame).__name__}"
            )
        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"config name {name!r} must be lower-case letters, digits or '_'")
        # A frame without columns cannot be written as Parquet that `datasets` reads back.
        if frame.width:
            out[name] = frame
    return out


def shard_files(
    shard: str,
    tables: Mapping[str, pl.DataFrame],
    info: CardInfo,
    static: CardStatic,
    read: Callable[[str], bytes | None],
) -> tuple[dict[str, bytes], list[str]]:
    """The files one shard's commit writes (data, its stats record, the summary, the card) and
    the stale ones it deletes, in write order: data first, card last.

    `read(path)` returns a file of the repo as it is now (None when absent). Only the summary
    and this shard's previous record are read, so the cost does not depend on how many shards
    were published before; a repo with the single index of earlier versions is converted once.
    """
    check_shard(shard)
    usable = usable_tables(tables)
    files = {data_path(name, shard): parquet_bytes(frame) for name, frame in usable.items()}
    summary_bytes = read(SUMMARY_PATH)
    summary, legacy = (json.loads(summary_bytes), {}) if summary_bytes else (None, {})
    if summary is None and (legacy_bytes := read(LEGACY_INDEX_PATH)) is not None:
        summary, legacy = summary_from_legacy(legacy_bytes.decode())
    if shard in legacy:
        old = legacy[shard]
    else:
        old_bytes = read(shard_record_path(shard))
        old = json.loads(old_bytes) if old_bytes else None
    record = shard_stats(shard, usable, info)
    summary = update_summary(summary, old, record)
    for name, rec in legacy.items():
        files.setdefault(shard_record_path(name), dump_json(rec))
    files[shard_record_path(shard)] = dump_json(record)
    files[SUMMARY_PATH] = dump_json(summary)
    files["README.md"] = render_card(static, info, summary, usable).encode()
    stale = sorted(set(old["files"].values()) - set(files)) if old else []
    if legacy:
        stale.append(LEGACY_INDEX_PATH)
    return files, stale

"""Assigning raw files to shards and landing them, so each shard is a fixed, replayable unit.

A file belongs to the first shard that saw its (source, path); new files go to new shards only,
so adding raw code never changes, and never re-runs, an existing shard. Exact duplicates (same
content hash) are kept as rows pointing at their first occurrence, for the funnel; so is a row
whose path another row of the same scan already took (`duplicate_of` is then its own path).

One writer at a time plans and lands shards (`Landing.lock`, in `landing.py`), because shard
names are numbered from the index.

A source that lists its units (files, tables) cheaply is read only where a unit is new or its
stamp changed since it was last landed whole, so a tick that finds nothing new reads no file.

Each shard a source lands gets a landing record (`_records/<shard>.json`): the source's
provenance and what its counters and clock moved by while it filled that shard, which the
`raw_code` asset reports as `source.*` metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import polars as pl

from codeio_dagster.landing import (
    INDEX_SCHEMA,
    LANDING_SCHEMA,
    LandedIndex,
    Landing,
    PlannedShard,
)
from codeio_dagster.sources.base import RawFile, Source, Unit

_KEY_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def file_id(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def raw_file_id(raw: RawFile) -> str:
    """The id of a landed row: its content's hash; for a rejected row (no content), its path's."""
    if raw.rejected is None:
        return file_id(raw.content)
    # Not the hash of no bytes: rejected rows would all be duplicates of one another.
    return file_id(b"rejected\0" + raw.path.encode("utf-8"))


def shard_name(source: str, index: int) -> str:
    return f"{_KEY_SAFE.sub('_', source)}-{index:05d}"


def plan_shards(
    files: Iterable[RawFile],
    *,
    source: str,
    index: pl.DataFrame,
    shard_size: int,
    max_shards: int | None = None,
) -> list[PlannedShard]:
    """New shards for the files of `source` that no shard in `index` holds yet (all at once)."""
    return list(
        iter_shards(files, source=source, index=index, shard_size=shard_size, max_shards=max_shards)
    )


def iter_shards(
    files: Iterable[RawFile],
    *,
    source: str,
    index: pl.DataFrame | LandedIndex,
    shard_size: int,
    max_shards: int | None = None,
) -> Iterator[PlannedShard]:
    """New shards for the files of `source` that no shard in `index` holds yet, one at a time.

    A path in `index` was landed before and is skipped. A path that repeats within `files` is
    another row the source named alike: it lands with `duplicate_of` set to that path, so
    raw_code counts it as dropped instead of it vanishing. Each shard is yielded as soon as it
    is full, before the next file is read, so only one shard's contents are held at a time.
    """
    landed = index if isinstance(index, LandedIndex) else LandedIndex.of(index)
    # Looked up row by row as the source yields, not joined afterwards: a tick cut short by
    # `max_shards` must stop reading at its last landed row, or the unit it stopped in would be
    # recorded as done with rows never landed.
    landed_paths = landed.paths.get(source, ())
    first = landed.shard_count(source)
    taken: set[str] = set()
    first_path: dict[str, str] = {}  # file_id -> first path of this scan with those bytes
    rows: list[dict] = []
    made = 0
    for raw in files:
        if raw.path in landed_paths:
            continue
        fid = raw_file_id(raw)
        earlier = first_path.get(fid)
        if earlier is None:
            first_path[fid] = raw.path
        rows.append(
            {
                "source": source,
                "path": raw.path,
                "origin": json.dumps(raw.origin, sort_keys=True, default=str),
                "file_id": fid,
                "duplicate_of": raw.path if raw.path in taken else None,
                "_earlier": earlier,
                "_landed": landed.first_path.get(fid),
                "rejected": raw.rejected,
                "detail": raw.detail,
                "size_bytes": raw.size_bytes,
                "content": raw.content,
            }
        )
        taken.add(raw.path)
        if len(rows) == shard_size:
            yield _shard(shard_name(source, first + made), rows)
            rows, made = [], made + 1
            if made == max_shards:
                return
    if rows:
        yield _shard(shard_name(source, first + made), rows)


_ROW_SCHEMA = pl.Schema(
    {
        **{k: v for k, v in LANDING_SCHEMA.items() if k != "shard"},
        "_earlier": pl.String(),
        "_landed": pl.String(),
    }
)


def _shard(name: str, rows: list[dict]) -> PlannedShard:
    """A shard's frame; `duplicate_of` of each row: the first path, landed or earlier in this
    scan, of its bytes (a rejected row has no bytes to share)."""
    frame = pl.DataFrame(rows, schema=_ROW_SCHEMA)
    frame = frame.with_columns(
        pl.lit(name).alias("shard"),
        pl.coalesce("duplicate_of", "_landed", "_earlier").alias("duplicate_of"),
    ).select(LANDING_SCHEMA.names())
    return PlannedShard(name, frame)


def unrequested_shards(landed: pl.DataFrame | Iterable[str], requested: Iterable[str]) -> list[str]:
    """Shards landed (an index frame, or names in landing order) that are not among `requested`."""
    if isinstance(landed, pl.DataFrame):
        landed = landed.get_column("shard").unique(maintain_order=True).to_list()
    asked = set(requested)
    return [name for name in dict.fromkeys(landed) if name not in asked]


def pending_units(listed: list[Unit], landed: dict[str, Unit]) -> list[Unit]:
    """The listed units not landed whole at their current stamp, in listing order, each with
    the position where its last landing stopped."""
    pending = []
    for unit in listed:
        before = landed.get(unit.key)
        if before is None:
            pending.append(unit)
        elif before.stamp != unit.stamp:
            pending.append(unit._replace(position=before.position))
    return pending


def land_new_shards(
    config,
    landing: Landing,
    *,
    max_shards: int | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[PlannedShard]:
    """Land, as new shards, the files of every configured source that no shard holds yet.

    Shards are written as they fill, so a landing holds one shard's contents at a time; the
    returned shards carry only their index columns. A source that raises keeps the shards
    it wrote before the error; with `on_error` the error is handed to it with the source's name
    and the other sources still land, without it the error propagates. A unit (a table) that
    raises is reported the same way, and the source's other units still land.
    """
    from codeio_dagster.sources import build_source

    landed: list[PlannedShard] = []
    for source_config in config.sources:
        budget = None if max_shards is None else max_shards - len(landed)
        if budget is not None and budget <= 0:
            break
        name = source_config.name
        written: list[PlannedShard] = []
        try:
            source = build_source(source_config, plugin_modules=config.source_plugin_modules)
            source.max_bytes = config.shards.max_file_bytes
            # Held across reading and landing: shard names are numbered from the index, so two
            # writers planning from the same index would both claim the next name.
            with landing.lock():
                listed = source.units()
                if listed is None:
                    files = source.scan()
                else:
                    todo = pending_units(listed, landing.landed_units(name))
                    if not todo:
                        continue
                    files = source.scan(todo)
                shards = iter_shards(
                    files,
                    source=name,
                    index=landing.landed(),
                    shard_size=config.shards.size,
                    max_shards=budget,
                )
                before: tuple[dict[str, int], float] = ({}, 0.0)
                try:
                    for shard in shards:
                        landing.write_shard(shard)
                        now = (dict(source.counters), source.seconds)
                        landing.write_record(shard.name, landing_record(source, shard, before, now))
                        before = now
                        written.append(
                            PlannedShard(shard.name, shard.rows.select(INDEX_SCHEMA.names()))
                        )
                finally:
                    # What was written is indexed even when the source failed part-way.
                    landing.add_to_index(written)
                # Units yielded to the end are recorded with their stamp; the one a tick's shard
                # budget cut short, with an empty stamp and where it stopped, so the next tick
                # reads it on from there.
                partial = source.partial_unit()
                landing.record_units(name, source.units_done + ([partial] if partial else []))
                for key, err in source.unit_errors:
                    failure = RuntimeError(f"{key}: {type(err).__name__}: {err}")
                    if on_error is None:
                        raise failure from err
                    on_error(name, failure)
        except Exception as err:
            landed += written
            if on_error is None:
                raise
            on_error(name, err)
            continue
        landed += written
    return landed


def landing_record(
    source: Source,
    shard: PlannedShard,
    before: tuple[dict[str, int], float],
    now: tuple[dict[str, int], float],
) -> dict[str, Any]:
    """What `source` did while it filled `shard`: its counters (rows_in, kept, dropped_<reason>)
    and seconds since the previous shard of the scan, and its provenance.

    A shard is yielded as soon as its last row is read, so the counters at that moment end
    exactly at the shard's last row. `rows_in` can exceed `rows_landed`: rows of files an
    earlier shard already holds are read again by a resumed or changed unit, then skipped.
    """
    counters, seconds = now
    moved = {k: n - before[0].get(k, 0) for k, n in counters.items()}
    return {
        "shard": shard.name,
        "counters": {k: n for k, n in moved.items() if n or k in ("rows_in", "kept")},
        "rows_landed": shard.rows.height,
        "seconds": round(seconds - before[1], 6),
        "provenance": source.provenance(),
    }

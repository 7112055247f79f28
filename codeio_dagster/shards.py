"""Assigning raw files to shards and landing them, so each shard is a fixed, replayable unit.

A file belongs to the first shard that saw its (source, path); new files go to new shards only,
so adding raw code never changes, and never re-runs, an existing shard. Exact duplicates (same
content hash) are kept as rows pointing at their first occurrence, for the funnel; so is a row
whose path another row of the same scan already took (`duplicate_of` is then its own path).

One writer at a time plans and lands shards (a lock file in the landing folder), because shard
names are numbered from the index: the sensor and `codeio demo` may share a landing.

A source that lists its units (files, tables) cheaply is read only where a unit is new or its
stamp changed since it was last landed whole, so a tick that finds nothing new reads no file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from codeio_dagster.sources.base import RawFile, Unit

LANDING_SCHEMA = pl.Schema(
    {
        "shard": pl.String(),
        "source": pl.String(),
        "path": pl.String(),
        "origin": pl.String(),
        "file_id": pl.String(),
        "duplicate_of": pl.String(),
        "content": pl.Binary(),
    }
)
INDEX_SCHEMA = pl.Schema(
    {"source": pl.String(), "path": pl.String(), "file_id": pl.String(), "shard": pl.String()}
)
UNITS_SCHEMA = pl.Schema({"source": pl.String(), "key": pl.String(), "stamp": pl.String()})
_KEY_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def file_id(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def shard_name(source: str, index: int) -> str:
    return f"{_KEY_SAFE.sub('_', source)}-{index:05d}"


@dataclass(frozen=True)
class PlannedShard:
    name: str
    rows: pl.DataFrame  # LANDING_SCHEMA


def plan_shards(
    files: Iterable[RawFile],
    *,
    source: str,
    index: pl.DataFrame,
    shard_size: int,
    max_shards: int | None = None,
) -> list[PlannedShard]:
    """New shards for the files of `source` that no shard in `index` holds yet.

    A path in `index` was landed before and is skipped. A path that repeats within `files` is
    another row the source named alike: it lands with `duplicate_of` set to that path, so
    raw_code counts it as dropped instead of it vanishing.
    """
    known = index.filter(pl.col("source") == source)
    # Looked up row by row as the source yields, not joined afterwards: a tick cut short by
    # `max_shards` must stop reading at its last landed row, or the unit it stopped in would be
    # recorded as done with rows never landed.
    landed_paths = set(known.get_column("path"))
    taken: set[str] = set()
    limit = None if max_shards is None else max_shards * shard_size
    rows: list[dict] = []
    for raw in files:
        if raw.path in landed_paths:
            continue
        rows.append(
            {
                "source": source,
                "path": raw.path,
                "origin": json.dumps(raw.origin, sort_keys=True, default=str),
                "file_id": file_id(raw.content),
                "duplicate_of": raw.path if raw.path in taken else None,
                "content": raw.content,
            }
        )
        taken.add(raw.path)
        if len(rows) == limit:
            break
    if not rows:
        return []

    first = known.get_column("shard").n_unique()
    names = pl.Series(
        "shard", [shard_name(source, first + k) for k in range(math.ceil(len(rows) / shard_size))]
    )
    row_schema = {k: v for k, v in LANDING_SCHEMA.items() if k != "shard"}
    planned = pl.DataFrame(rows, schema=row_schema).with_columns(
        names.gather(pl.Series(range(len(rows))) // shard_size)
    )
    planned = _point_duplicates(planned, index)
    return [
        PlannedShard(name, part)
        for name, part in zip(
            names, planned.partition_by("shard", maintain_order=True), strict=True
        )
    ]


def _point_duplicates(rows: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    """`duplicate_of` of each new row: the first path, landed or earlier in `rows`, of its bytes."""
    first_landed = index.unique("file_id", keep="first", maintain_order=True).select(
        "file_id", pl.col("path").alias("_landed")
    )
    earlier_here = pl.when(pl.int_range(pl.len()).over("file_id") > 0).then(
        pl.col("path").first().over("file_id")
    )
    return (
        rows.join(first_landed, on="file_id", how="left", maintain_order="left")
        .with_columns(pl.coalesce("duplicate_of", "_landed", earlier_here).alias("duplicate_of"))
        .select(LANDING_SCHEMA.names())
    )


def unrequested_shards(index: pl.DataFrame, requested: Iterable[str]) -> list[str]:
    """Shards in `index`, in landing order, that are not among `requested`."""
    asked = pl.DataFrame({"shard": list(requested)}, schema={"shard": pl.String()})
    landed = index.select("shard").unique(maintain_order=True)
    return landed.join(asked, on="shard", how="anti").get_column("shard").to_list()


def pending_units(listed: list[Unit], landed: dict[str, str]) -> list[Unit]:
    """The listed units not landed whole at their current stamp, in listing order."""
    return [unit for unit in listed if landed.get(unit.key) != unit.stamp]


class Landing:
    """The landed shards on disk: one Parquet file per shard plus an index of (source, path)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock_depth = 0

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the landing's lock (re-entrant within this object) while planning and writing."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        # A lock file beside the index, not the index itself: the index is replaced by rename,
        # and a lock on a replaced file guards nothing.
        with open(self.root / "_index.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def index_path(self) -> Path:
        return self.root / "_index.parquet"

    def index(self) -> pl.DataFrame:
        if not self.index_path.exists():
            return pl.DataFrame(schema=INDEX_SCHEMA)
        return pl.read_parquet(self.index_path)

    def shards(self) -> pl.DataFrame:
        """The `shard` column of the index (one row per landed file), read alone."""
        if not self.index_path.exists():
            return pl.DataFrame(schema={"shard": pl.String()})
        return pl.read_parquet(self.index_path, columns=["shard"])

    @property
    def units_path(self) -> Path:
        return self.root / "_units.parquet"

    def landed_units(self, source: str) -> dict[str, str]:
        """Stamp by unit key of the units of `source` whose every file a shard holds."""
        if not self.units_path.exists():
            return {}
        frame = pl.read_parquet(self.units_path).filter(pl.col("source") == source)
        return dict(frame.select("key", "stamp").iter_rows())

    def record_units(self, source: str, units: list[Unit]) -> None:
        """Remember `units` as landed whole; written after the shards and index they rest on."""
        if not units:
            return
        added = pl.DataFrame(
            {"source": source, "key": [u.key for u in units], "stamp": [u.stamp for u in units]},
            schema=UNITS_SCHEMA,
        )
        with self.lock():
            known = (
                pl.read_parquet(self.units_path)
                if self.units_path.exists()
                else pl.DataFrame(schema=UNITS_SCHEMA)
            )
            kept = known.join(added.select("source", "key"), on=["source", "key"], how="anti")
            write_parquet_atomic(pl.concat([kept, added]), self.units_path)

    def shard_path(self, shard: str) -> Path:
        return self.root / f"{shard}.parquet"

    def write(self, shards: list[PlannedShard]) -> None:
        """Land shard files first and the index last, so a crash never indexes a missing file."""
        if not shards:
            return
        added = pl.concat([s.rows.select("source", "path", "file_id", "shard") for s in shards])
        with self.lock():
            for shard in shards:
                write_parquet_atomic(shard.rows, self.shard_path(shard.name))
            write_parquet_atomic(pl.concat([self.index(), added]), self.index_path)

    def read(self, shard: str) -> pl.DataFrame:
        path = self.shard_path(shard)
        if not path.exists():
            raise FileNotFoundError(
                f"shard {shard!r} has no landed files at {path}; shards are created by the "
                "`raw_code_sensor` or `codeio demo`"
            )
        return pl.read_parquet(path)


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to `path` by a rename, so readers see the old file or the new one whole."""
    # A temp name of its own per write: writers sharing one temp name rename each other's
    # half-written files into place.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def land_new_shards(
    config,
    landing: Landing,
    *,
    max_shards: int | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[PlannedShard]:
    """Land, as new shards, the files of every configured source that no shard holds yet.

    A source that raises lands nothing; with `on_error` the error is handed to it with the
    source's name and the other sources still land, without it the error propagates.
    """
    from codeio_dagster.sources import build_source

    landed: list[PlannedShard] = []
    for source_config in config.sources:
        budget = None if max_shards is None else max_shards - len(landed)
        if budget is not None and budget <= 0:
            break
        name = source_config.name
        try:
            source = build_source(source_config, plugin_modules=config.source_plugin_modules)
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
                planned = plan_shards(
                    files,
                    source=name,
                    index=landing.index(),
                    shard_size=config.shards.size,
                    max_shards=budget,
                )
                landing.write(planned)
                # Only units yielded to the end are recorded: a tick cut short by the shard
                # budget leaves the rest of its unit to be read again next tick, where known
                # paths are skipped.
                landing.record_units(name, source.units_done)
        except Exception as err:
            if on_error is None:
                raise
            on_error(name, err)
            continue
        landed += planned
    return landed

"""Assigning raw files to shards and landing them, so each shard is a fixed, replayable unit.

A file belongs to the first shard that saw its (source, path); new files go to new shards only,
so adding raw code never changes, and never re-runs, an existing shard. Exact duplicates (same
content hash) are kept as rows pointing at their first occurrence, for the funnel.

A source that lists its units (files, tables) cheaply is read only where a unit is new or its
stamp changed since it was last landed whole, so a tick that finds nothing new reads no file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
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
    """New shards for the files of `source` that no shard in `index` holds yet."""
    known = index.filter(pl.col("source") == source)
    seen_paths = set(known.get_column("path").to_list())
    first_path = dict(
        index.unique("file_id", keep="first", maintain_order=True)
        .select("file_id", "path")
        .iter_rows()
    )
    next_index = known.get_column("shard").n_unique()
    shards: list[PlannedShard] = []
    batch: list[dict] = []

    def close() -> None:
        nonlocal next_index
        name = shard_name(source, next_index)
        for row in batch:
            row["shard"] = name
        shards.append(PlannedShard(name, pl.DataFrame(batch, schema=LANDING_SCHEMA)))
        next_index += 1
        batch.clear()

    for raw in files:
        if raw.path in seen_paths:
            continue
        seen_paths.add(raw.path)
        fid = file_id(raw.content)
        batch.append(
            {
                "shard": "",
                "source": source,
                "path": raw.path,
                "origin": json.dumps(raw.origin, sort_keys=True, default=str),
                "file_id": fid,
                "duplicate_of": first_path.get(fid),
                "content": raw.content,
            }
        )
        first_path.setdefault(fid, raw.path)
        if len(batch) == shard_size:
            close()
            if max_shards is not None and len(shards) >= max_shards:
                return shards
    if batch:
        close()
    return shards


def pending_units(listed: list[Unit], landed: dict[str, str]) -> list[Unit]:
    """The listed units not landed whole at their current stamp, in listing order."""
    return [unit for unit in listed if landed.get(unit.key) != unit.stamp]


class Landing:
    """The landed shards on disk: one Parquet file per shard plus an index of (source, path)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def index_path(self) -> Path:
        return self.root / "_index.parquet"

    def index(self) -> pl.DataFrame:
        if not self.index_path.exists():
            return pl.DataFrame(schema=INDEX_SCHEMA)
        return pl.read_parquet(self.index_path)

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
        self.root.mkdir(parents=True, exist_ok=True)
        added = pl.DataFrame(
            {"source": source, "key": [u.key for u in units], "stamp": [u.stamp for u in units]},
            schema=UNITS_SCHEMA,
        )
        known = (
            pl.read_parquet(self.units_path)
            if self.units_path.exists()
            else pl.DataFrame(schema=UNITS_SCHEMA)
        )
        kept = known.join(added.select("source", "key"), on=["source", "key"], how="anti")
        _atomic_parquet(pl.concat([kept, added]), self.units_path)

    def shard_path(self, shard: str) -> Path:
        return self.root / f"{shard}.parquet"

    def write(self, shards: list[PlannedShard]) -> None:
        """Land shard files first and the index last, so a crash never indexes a missing file."""
        if not shards:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for shard in shards:
            _atomic_parquet(shard.rows, self.shard_path(shard.name))
        added = pl.concat([s.rows.select("source", "path", "file_id", "shard") for s in shards])
        _atomic_parquet(pl.concat([self.index(), added]), self.index_path)

    def read(self, shard: str) -> pl.DataFrame:
        path = self.shard_path(shard)
        if not path.exists():
            raise FileNotFoundError(
                f"shard {shard!r} has no landed files at {path}; shards are created by the "
                "`raw_code_sensor` or `codeio demo`"
            )
        return pl.read_parquet(path)


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.write_parquet(tmp)
    tmp.replace(path)


def land_new_shards(
    config, landing: Landing, *, max_shards: int | None = None
) -> list[PlannedShard]:
    """Land, as new shards, the files of every configured source that no shard holds yet."""
    from codeio_dagster.sources import build_source

    landed: list[PlannedShard] = []
    for source_config in config.sources:
        budget = None if max_shards is None else max_shards - len(landed)
        if budget is not None and budget <= 0:
            break
        name = source_config.name
        source = build_source(source_config, plugin_modules=config.source_plugin_modules)
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
        # Only units yielded to the end are recorded: a tick cut short by the shard budget
        # leaves the rest of its unit to be read again next tick, where known paths are skipped.
        landing.record_units(name, source.units_done)
        landed += planned
    return landed

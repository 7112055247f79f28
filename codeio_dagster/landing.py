"""The landing: where raw files wait as shards, one Parquet file per shard, with an index of
(source, path) -> shard, the units each source landed whole, and a record per shard of what its
source did while filling it (`_records/<shard>.json`, read by the `raw_code` asset).

`root` is a folder or an object-storage URL (`codeio_dagster.storage`). One writer at a time
plans and lands shards (a lock in the landing folder, held across machines when the landing is
on object storage: `storage.exclusive`), because shard names are numbered from the index: the
sensor and `codeio demo` may share a landing. How files become shards is `shards.py`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from codeio_dagster import storage
from codeio_dagster.sources.base import Unit

LANDING_SCHEMA = pl.Schema(
    {
        "shard": pl.String(),
        "source": pl.String(),
        "path": pl.String(),
        "origin": pl.String(),
        "file_id": pl.String(),
        "duplicate_of": pl.String(),
        "rejected": pl.String(),  # the reason a source did not read the file, else null
        "detail": pl.String(),
        "size_bytes": pl.Int64(),
        "content": pl.Binary(),
    }
)
INDEX_SCHEMA = pl.Schema(
    {"source": pl.String(), "path": pl.String(), "file_id": pl.String(), "shard": pl.String()}
)
UNITS_SCHEMA = pl.Schema(
    {"source": pl.String(), "key": pl.String(), "stamp": pl.String(), "position": pl.String()}
)
COMPACT_PARTS = 64  # index parts merged into one base file: reads stay few, writes stay small


@dataclass(frozen=True)
class PlannedShard:
    name: str
    rows: pl.DataFrame  # LANDING_SCHEMA (land_new_shards returns only the INDEX_SCHEMA columns)


class LandedIndex:
    """What a process knows of a landing's index, kept up to date by reading only the index
    files it has not read yet: the landed paths of each source, the first landed path of each
    file id and the shards in landing order.

    The index files are written once and never changed, so a sensor's tick (its process lives
    across ticks) reads the parts landed since the last tick, usually none but its own, and
    looks new rows up in memory: its cost does not grow with the rows landed before. A process's
    first look reads the index once (`rows_read` counts index rows read from storage).
    """

    def __init__(self) -> None:
        self.paths: dict[str, set[str]]
        self.first_path: dict[str, str]  # file_id -> first landed path with those bytes
        self.shards: dict[str, str]  # shard -> source, in landing order
        self.counts: dict[str, int]  # source -> its number of shards
        self.lock = threading.Lock()
        self.rows_read = 0
        self.reset()

    def reset(self, index_id: str | None = None) -> None:
        """Forget what was read (the index it came from is gone)."""
        self.paths = {}
        self.first_path = {}
        self.shards = {}
        self.counts = {}
        self.files_read: set[str] = set()
        self.parts_upto = -1  # every index part up to this number is folded in
        self.index_id = index_id  # the id of the index this view was read from

    @classmethod
    def of(cls, frame: pl.DataFrame) -> LandedIndex:
        """The index held in `frame` (INDEX_SCHEMA columns)."""
        view = cls()
        view.fold(frame)
        return view

    def fold(self, frame: pl.DataFrame) -> None:
        """Add index rows, in landing order."""
        columns = [frame.get_column(c).to_list() for c in ("source", "path", "file_id", "shard")]
        for source, path, fid, shard in zip(*columns, strict=True):
            self.paths.setdefault(source, set()).add(path)
            self.first_path.setdefault(fid, path)
            if shard not in self.shards:
                self.shards[shard] = source
                self.counts[source] = self.counts.get(source, 0) + 1

    def shard_count(self, source: str) -> int:
        return self.counts.get(source, 0)

    def shard_names(self) -> list[str]:
        """Every landed shard, in landing order."""
        return list(self.shards)


# One LandedIndex per landing a process has looked at (the sensor's process lives across ticks).
_LANDED: dict[str, LandedIndex] = {}
_LANDED_LOCK = threading.Lock()


class Landing:
    """The landed shards: one Parquet file per shard plus an index of (source, path).

    `root` is a folder or an object-storage URL (see `codeio_dagster.storage`).
    """

    def __init__(self, root: str | Path | storage.ObjectPath):
        self.root = storage.location(root)
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
        # A lock beside the index, not the index itself: the index is replaced by rename,
        # and a lock on a replaced file guards nothing.
        with storage.exclusive(self.root / "_index.lock"):
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    # The index is a base file plus parts added one per landing, so a landing writes what it
    # adds, not the whole index again. Every file is written once (write-then-rename) and
    # never changed: `_index/<n>.parquet` is part n; `_index/base-<n>.parquet` holds parts up to
    # n (and the `_index.parquet` of landings made before parts existed). Reads take the
    # newest base and the parts after it, so a compaction that stopped half-way reads right.

    @property
    def index_dir(self) -> storage.Location:
        return self.root / "_index"

    def _index_files(self) -> tuple[list[storage.Location], int]:
        """The files holding the index, base first, and the number of the last part."""
        legacy = self.root / "_index.parquet"
        parts: list[tuple[int, storage.Location]] = []
        bases: list[tuple[int, storage.Location]] = []
        for rel in storage.list_files(self.index_dir, ".parquet"):
            name = rel.removesuffix(".parquet")
            if name.startswith("base-"):
                bases.append((int(name.removeprefix("base-")), self.index_dir / rel))
            elif name.isdigit():
                parts.append((int(name), self.index_dir / rel))
        covered, files = -1, []
        if bases:
            covered, base = max(bases)
            files.append(base)
        elif storage.exists(legacy):
            files.append(legacy)
        parts.sort()
        files += [path for n, path in parts if n > covered]
        return files, max([covered, *(n for n, _ in parts)])

    def _view(self) -> LandedIndex:
        key = str(self.root.resolve()) if isinstance(self.root, Path) else str(self.root)
        with _LANDED_LOCK:
            return _LANDED.setdefault(key, LandedIndex())

    def landed(self) -> LandedIndex:
        """The index as this process knows it, brought up to date: only index files it has not
        read yet are read (at most the parts landed since, once it has looked before)."""
        view = self._view()
        with view.lock:
            index_id = self._index_id()
            files, _ = self._index_files()
            if index_id != view.index_id:  # another index (this one was removed and begun again)
                view.reset(index_id)
            for path in files:
                name = path.name
                number = name.removesuffix(".parquet").removeprefix("base-")
                # A part (or a base) up to the parts already folded in adds nothing.
                if name in view.files_read or (number.isdigit() and int(number) <= view.parts_upto):
                    view.files_read.add(name)
                    continue
                frame = storage.read_parquet(path, columns=INDEX_SCHEMA.names())
                view.rows_read += frame.height
                view.fold(frame)
                view.files_read.add(name)
                if number.isdigit():
                    view.parts_upto = max(view.parts_upto, int(number))
        return view

    def _index_id(self) -> str | None:
        """The id of this index, written with its first part: a view read from another index
        (one removed and landed again under the same names) is not taken for this one."""
        try:
            return storage.read_bytes(self.index_dir / "_id").decode()
        except FileNotFoundError:
            return None

    def index(self, columns: list[str] | None = None) -> pl.DataFrame:
        files, _ = self._index_files()
        schema = INDEX_SCHEMA if columns is None else {c: INDEX_SCHEMA[c] for c in columns}
        if not files:
            return pl.DataFrame(schema=schema)
        return pl.concat([storage.read_parquet(f, columns=list(schema)) for f in files])

    def shards(self) -> pl.DataFrame:
        """The `shard` column of the index (one row per landed file), read alone."""
        return self.index(columns=["shard"])

    @property
    def units_path(self) -> storage.Location:
        return self.root / "_units.parquet"

    def _units(self) -> pl.DataFrame:
        if not storage.exists(self.units_path):
            return pl.DataFrame(schema=UNITS_SCHEMA)
        frame = storage.read_parquet(self.units_path)
        if "position" not in frame.columns:  # landed before positions were recorded
            frame = frame.with_columns(pl.lit(None, pl.String()).alias("position"))
        return frame.select(UNITS_SCHEMA.names())

    def landed_units(self, source: str) -> dict[str, Unit]:
        """The units of `source` a shard holds, by key: stamp (empty: only partly) and position."""
        frame = self._units().filter(pl.col("source") == source)
        return {key: Unit(key, stamp, position) for _, key, stamp, position in frame.iter_rows()}

    def record_units(self, source: str, units: list[Unit]) -> None:
        """Remember `units` as landed (up to their position); written after the shards and index."""
        if not units:
            return
        added = pl.DataFrame(
            {
                "source": source,
                "key": [u.key for u in units],
                "stamp": [u.stamp for u in units],
                "position": [u.position for u in units],
            },
            schema=UNITS_SCHEMA,
        )
        with self.lock():
            known = self._units()
            kept = known.join(added.select("source", "key"), on=["source", "key"], how="anti")
            write_parquet_atomic(pl.concat([kept, added]), self.units_path)

    def shard_path(self, shard: str) -> storage.Location:
        return self.root / f"{shard}.parquet"

    def record_path(self, shard: str) -> storage.Location:
        return self.root / "_records" / f"{shard}.json"

    def write_record(self, shard: str, record: dict[str, Any]) -> None:
        """The landing record of `shard`, written before the index names the shard."""
        storage.write_bytes(self.record_path(shard), json.dumps(record, sort_keys=True).encode())

    def read_record(self, shard: str) -> dict[str, Any] | None:
        """The landing record of `shard`; None for a shard landed without one (by `write`, or
        by a version of the project before records)."""
        try:
            return json.loads(storage.read_bytes(self.record_path(shard)))
        except FileNotFoundError:
            return None

    def write(self, shards: list[PlannedShard]) -> None:
        """Land shard files first and the index last, so a crash never indexes a missing file."""
        if not shards:
            return
        with self.lock():
            for shard in shards:
                self.write_shard(shard)
            self.add_to_index(shards)

    def write_shard(self, shard: PlannedShard) -> None:
        """The shard's file; it counts as landed once `add_to_index` names it."""
        write_parquet_atomic(shard.rows, self.shard_path(shard.name))

    def add_to_index(self, shards: list[PlannedShard]) -> None:
        """Index `shards` as one new part; every COMPACT_PARTS parts are merged into a base."""
        if not shards:
            return
        added = pl.concat([s.rows.select(INDEX_SCHEMA.names()) for s in shards])
        with self.lock():
            files, last = self._index_files()
            view = self._view()
            index_id = self._index_id()
            if index_id is None:
                index_id = uuid.uuid4().hex
                storage.write_bytes(self.index_dir / "_id", index_id.encode())
                with view.lock:
                    if view.index_id is None:  # what it read (nothing, or a legacy index) stays
                        view.index_id = index_id
            part = self.index_dir / f"{last + 1:012d}.parquet"
            write_parquet_atomic(added, part)
            with view.lock:
                # This process knew every part before this one: it knows this one without reading.
                if view.index_id == index_id and view.parts_upto == last:
                    view.fold(added)
                    view.files_read.add(part.name)
                    view.parts_upto = last + 1
            if len(files) >= COMPACT_PARTS:
                self._compact()

    def _compact(self) -> None:
        files, last = self._index_files()
        write_parquet_atomic(self.index(), self.index_dir / f"base-{last:012d}.parquet")
        # Only now are the older files garbage; a crash before this leaves them unread.
        for path in files:
            storage.delete(path)

    def read(self, shard: str) -> pl.DataFrame:
        path = self.shard_path(shard)
        if not storage.exists(path):
            raise FileNotFoundError(
                f"shard {shard!r} has no landed files at {path}; shards are created by the "
                "`raw_code_sensor` or `codeio demo`"
            )
        return storage.read_parquet(path)


def write_parquet_atomic(frame: pl.DataFrame, path: storage.Location) -> None:
    """Write `frame` to `path` so readers see the old table or the new one whole."""
    storage.write_parquet(frame, path)

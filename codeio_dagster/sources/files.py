"""Built-in raw-code sources: a folder of files, and JSONL or Parquet tables with a content column.

What a source reads is confined to what the user pointed at: a file is read only when its real
path (links resolved) is inside the source folder and it is a regular file, opened without
following a link and without blocking (a FIFO swapped in never hangs a tick). A link leading
out of the folder lands as a rejected row, and nothing of its target is read or stored. Sizes
are checked before contents are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, field_validator

from codeio_dagster.sources.base import (
    RawFile,
    Source,
    SourceOptions,
    Unit,
    file_stamp,
    raw_file,
    rejection,
    row_path,
    safe_name,
)

OUTSIDE = "a link leading outside the source folder; its target was not read"


class _Listed(NamedTuple):  # a tuple: made once per file on every tick
    key: str  # the relative path as valid UTF-8: the unit key and the landed path
    rel: str  # the relative path as the file system names it
    stat: os.stat_result  # of the file; of the link itself when it leads outside
    inside: bool


def _within(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip("/") + "/")


def _list_folder(root: Path, pattern: str) -> list[_Listed]:
    """Regular files under `root` matching `pattern`, and links that leave it, in path order."""
    root_real = os.path.realpath(root)
    # String slicing, not Path.relative_to: the listing runs every tick over every file.
    prefix = len(str(root).rstrip("/")) + 1
    # Only links and folders reached through links need resolving; one realpath per folder.
    folder_inside: dict[str, bool] = {}
    found = []
    for path in root.glob(pattern):
        text = str(path)
        try:
            st = os.lstat(text)
        except FileNotFoundError:
            continue
        parent = text.rpartition("/")[0]
        inside = folder_inside.get(parent)
        if inside is None:
            inside = folder_inside[parent] = _within(os.path.realpath(parent), root_real)
        rel = text[prefix:]
        key, _ = safe_name(rel)
        if stat.S_ISLNK(st.st_mode) or not inside:
            real = os.path.realpath(text)
            if not _within(real, root_real):
                found.append(_Listed(key, rel, st, inside=False))
                continue
            try:
                st = os.stat(real)
            except OSError:  # a dangling link, as `is_file()` would say
                continue
        if stat.S_ISREG(st.st_mode):
            found.append(_Listed(key, rel, st, inside=True))
    found.sort(key=lambda item: item.key.split("/"))
    return found


def _real_inside(root: Path, rel: str) -> str | None:
    """The real path of `root/rel` (links resolved) when it is inside `root`, else None."""
    real = os.path.realpath(os.path.join(root, rel))
    if not _within(real, os.path.realpath(root)):
        return None
    return real


def _read_regular(real: str, max_bytes: int | None) -> bytes | tuple[str, str, int | None]:
    """The bytes of a regular file, or (reason, detail, size); the size is checked first."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(real, flags)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "unreadable", "not a regular file", None
        over = f"over shards.max_file_bytes={max_bytes}"
        if max_bytes is not None and st.st_size > max_bytes:
            return "oversized", f"{st.st_size} bytes, {over}", st.st_size
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # it grew since the fstat
            return "oversized", f"more than {max_bytes} bytes, {over}", None
        return data


class FolderOptions(SourceOptions):
    path: Path
    glob: str = "**/*.py"

    @field_validator("glob")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError(f"glob must be relative to `path`, got {value!r}")
        return value


class FolderSource(Source):
    """Every regular file inside a folder that matches a glob, in path order."""

    name = "folder"
    Options = FolderOptions
    options: FolderOptions

    def __init__(self, options: SourceOptions):
        super().__init__(options)
        self._listed: dict[str, _Listed] | None = None

    def _matched(self) -> list[_Listed]:
        root = self.options.path
        if not root.is_dir():
            raise FileNotFoundError(f"folder source: {root} is not a folder")
        listed = _list_folder(root, self.options.glob)
        self._listed = {item.key: item for item in listed}
        return listed

    def units(self) -> list[Unit]:
        return [
            Unit(i.key, file_stamp(i.stat.st_size, i.stat.st_mtime_ns)) for i in self._matched()
        ]

    def unit_files(self, key: str) -> Iterator[RawFile]:
        if self._listed is None:
            self._matched()
        item = self._listed.get(key)
        if item is None:  # gone since it was listed
            return
        origin: dict[str, Any] = {"file": key}
        if item.rel != key:
            origin["path_bytes"] = os.fsencode(item.rel).hex()
        real = _real_inside(self.options.path, item.rel)
        if real is None:
            yield rejection(key, "outside_root", OUTSIDE, origin)
            return
        try:
            content = _read_regular(real, self.max_bytes)
        except FileNotFoundError:
            return
        except OSError as err:
            # strerror only: the exception's text would name the target of a swapped-in link.
            yield rejection(key, "unreadable", f"{type(err).__name__}: {err.strerror}", origin)
            return
        if isinstance(content, tuple):
            reason, detail, size = content
            yield rejection(key, reason, detail, origin, size=size)
            return
        yield RawFile(path=key, content=content, origin=origin)

    def files(self) -> Iterator[RawFile]:
        for item in self._matched():
            yield from self.unit_files(item.key)

    def provenance(self) -> dict[str, Any]:
        return {"source": self.name, "path": str(self.options.path), "glob": self.options.glob}


class TableOptions(SourceOptions):
    path: Path = Field(description="a file, or a folder read with `glob`")
    glob: str | None = None
    content_column: str = "content"
    path_column: str | None = "path"


# Why a row is unusable: reason code, detail, and its size in bytes when known.
Problem = tuple[str, str, int | None]
# A row: its number, its columns (None when unreadable) and the problem with it, if any.
Row = tuple[int, dict[str, Any] | None, Problem | None]
_SIZE = "__codeio_size__"  # the byte size of a content over the bound, computed by polars


class _TableSource(Source):
    """Rows of tables: one raw file per row, its text in `content_column`.

    Tables are read from where the last landing stopped (`position`), so a table that grows at
    its end costs a tick only its new rows; a position whose check fails (the table was
    rewritten or truncated) reads the table from its first row again.
    """

    options: TableOptions
    suffix: str
    start: tuple[int, ...]  # the position of a table's first row

    def __init__(self, options: SourceOptions):
        super().__init__(options)
        self._listed: dict[str, _Listed] = {}
        # key -> (table path, where reading stands); set before each row is yielded.
        self._at: dict[str, tuple[str, tuple[int, ...]]] = {}

    def _tables(self) -> list[tuple[str, str | None, os.stat_result]]:
        """(key, real path or None when it leads outside, stat) of every table."""
        target = self.options.path
        if target.is_file():
            return [(safe_name(target.name)[0], str(target), target.stat())]
        if not target.is_dir():
            raise FileNotFoundError(f"{self.name} source: {target} does not exist")
        listed = _list_folder(target, self.options.glob or f"**/*{self.suffix}")
        self._listed = {item.key: item for item in listed}
        return [(i.key, _real_inside(target, i.rel) if i.inside else None, i.stat) for i in listed]

    def units(self) -> list[Unit]:
        return [Unit(key, file_stamp(st.st_size, st.st_mtime_ns)) for key, _, st in self._tables()]

    def _table_path(self, key: str) -> str | None:
        target = self.options.path
        if target.is_file():
            return str(target)
        if not self._listed:
            self._tables()
        item = self._listed.get(key)
        rel = item.rel if item else key
        return _real_inside(target, rel)

    def unit_files(self, key: str) -> Iterator[RawFile]:
        return self.read_unit(Unit(key, ""))

    def read_unit(self, unit: Unit) -> Iterator[RawFile]:
        path = self._table_path(unit.key)
        if path is None:
            yield rejection(unit.key, "outside_root", OUTSIDE, {"table": unit.key})
            return
        start = self._resume(path, unit.position) if unit.position else None
        yield from self._table_files(unit.key, path, start)

    def files(self) -> Iterator[RawFile]:
        for key, _, _ in self._tables():
            yield from self.unit_files(key)

    def position(self, key: str) -> str | None:
        if key not in self._at:
            return None
        path, at = self._at[key]
        return self._position(path, at)

    def _rows(self, path: str, start: tuple[int, ...] | None) -> Iterator[tuple[Row, tuple]]:
        """Each row with where reading stands after it."""
        raise NotImplementedError

    def _resume(self, path: str, position: str) -> tuple[int, ...] | None:
        raise NotImplementedError

    def _position(self, path: str, at: tuple[int, ...]) -> str:
        raise NotImplementedError

    def _table_files(self, key: str, path: str, start: tuple[int, ...] | None) -> Iterator[RawFile]:
        path_column = self.options.path_column
        # A read that finds no new row leaves the position where it started.
        self._at[key] = (path, start or self.start)
        for (index, row, problem), at in self._rows(path, start):
            # Set before the yield: a consumer that stops after this row leaves the position
            # just past it, so a tick cut short by its shard budget resumes from there.
            self._at[key] = (path, at)
            origin: dict[str, Any] = {"table": key, "row": index}
            name = None
            if row is not None:
                name = row.get(path_column) if path_column else None
                if name is not None and not isinstance(name, str):
                    name = json.dumps(name, default=str)
                origin.update({k: v for k, v in row.items() if k in ("repo_name", "blob_id") and v})
            here = row_path(key, index, name)
            if problem is not None:
                reason, detail, size = problem
                yield rejection(here, reason, detail, origin, size=size)
                continue
            yield self._row_file(here, self._where(index), row, origin)

    def _row_file(self, here: str, where: str, row: dict[str, Any], origin: dict) -> RawFile:
        """The raw file of one readable row (a subclass lands rows in another form)."""
        column = self.options.content_column
        if column not in row:
            detail = (
                f"{where}: no column {column!r} (set `content_column`; "
                f"columns are {sorted(row)[:20]})"
            )
            return rejection(here, "bad_row", detail, origin)
        raw = raw_file(here, row[column], origin)
        if raw.rejected:
            raw = rejection(here, raw.rejected, f"{where}: {raw.detail}", origin)
        return raw

    def _where(self, index: int) -> str:
        return f"row {index}"


_CHECK_BYTES = 4096


def _jsonl_check(path: str, offset: int) -> str:
    """A digest of the first and the last few KiB before `offset`: a rewrite changes it."""
    with open(path, "rb") as handle:
        head = handle.read(min(offset, _CHECK_BYTES))
        handle.seek(max(0, offset - _CHECK_BYTES))
        tail = handle.read(min(offset, _CHECK_BYTES))
    return hashlib.sha256(head + b"\0" + tail).hexdigest()[:32]


class JsonlSource(_TableSource):
    """JSON Lines files; the CodeI/O authors' rawcode_1k format works as is."""

    name = "jsonl"
    Options = TableOptions
    suffix = ".jsonl"
    start = (0, 0)  # byte offset, line number

    def _where(self, index: int) -> str:
        return f"line {index + 1}"

    def _position(self, path: str, at: tuple[int, ...]) -> str:
        offset, line = at
        return f"{offset}:{line}:{_jsonl_check(path, offset)}"

    def _resume(self, path: str, position: str) -> tuple[int, ...] | None:
        try:
            offset, line, check = position.split(":")
            offset, line = int(offset), int(line)
        except ValueError:
            return None
        if os.stat(path).st_size < offset or _jsonl_check(path, offset) != check:
            return None  # truncated or rewritten: read it again from the top
        return offset, line

    def _line_limit(self) -> int | None:
        # A row's content can be at most 6 times longer escaped (\u0000) than as bytes; a line
        # longer than that with room for other columns is rejected without being held whole.
        return None if self.max_bytes is None else 6 * self.max_bytes + 65_536

    def _rows(self, path: str, start: tuple[int, ...] | None) -> Iterator[tuple[Row, tuple]]:
        offset, index = start or self.start
        limit = self._line_limit()
        with Path(path).open("rb") as handle:
            handle.seek(offset)
            while True:
                line = handle.readline() if limit is None else handle.readline(limit + 1)
                if not line:
                    return
                size = len(line)
                if limit is not None and size > limit and not line.endswith(b"\n"):
                    while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
                        size += len(more)
                    size += len(more)
                    detail = (
                        f"line {index + 1}: {size} bytes, longer than a row with at most "
                        f"shards.max_file_bytes={self.max_bytes} of content can be"
                    )
                    yield (index, None, ("oversized", detail, size)), (offset + size, index + 1)
                elif line.strip():
                    row, problem = _parse_line(line, index)
                    if problem is not None and not line.endswith(b"\n"):
                        # An unfinished last line (a writer mid-append) waits for the next tick.
                        return
                    yield (index, row, problem), (offset + size, index + 1)
                offset += size
                index += 1


def _parse_line(line: bytes, index: int) -> tuple[dict | None, Problem | None]:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as err:
        detail = f"line {index + 1}: not JSON ({type(err).__name__}: {err})"
        return None, ("bad_row", detail, None)
    if not isinstance(row, dict):
        detail = f"line {index + 1}: a JSON {type(row).__name__}, not an object"
        return None, ("bad_row", detail, None)
    return row, None


_PARQUET_BATCH = 4096


def _row_groups_check(path: str, rows: int) -> str:
    """A digest of the metadata of the row groups holding the first `rows` rows."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    groups, seen = [], 0
    for i in range(meta.num_row_groups):
        if seen >= rows:
            break
        group = meta.row_group(i)
        groups.append(group.to_dict())
        seen += group.num_rows
    if seen < rows:
        return "short"
    return hashlib.sha256(json.dumps(groups, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ParquetSource(_TableSource):
    """Parquet files, read in batches so a large file never sits in memory whole."""

    name = "parquet"
    Options = TableOptions
    suffix = ".parquet"
    start = (0,)  # row number

    def _position(self, path: str, at: tuple[int, ...]) -> str:
        (rows,) = at
        return f"{rows}:{_row_groups_check(path, rows)}"

    def _resume(self, path: str, position: str) -> tuple[int, ...] | None:
        # Row groups are written once: when those that held the rows already read are unchanged,
        # the rows after them are new (a table rewritten with more row groups at its end).
        try:
            rows, check = position.split(":")
            rows = int(rows)
        except ValueError:
            return None
        return (rows,) if _row_groups_check(path, rows) == check else None

    def _rows(self, path: str, start: tuple[int, ...] | None) -> Iterator[tuple[Row, tuple]]:
        import polars as pl

        # Slices of a lazy scan read only the row groups they need and hold no file open
        # between batches, so a source abandoned mid-table (a tick's shard budget) leaks nothing.
        table = pl.scan_parquet(path)
        selected = self._select(Path(path).name, table.collect_schema())
        total = table.select(pl.len()).collect().item()
        first = start[0] if start else 0
        for offset in range(first, total, _PARQUET_BATCH):
            batch = table.slice(offset, _PARQUET_BATCH).select(selected).collect()
            for index, row in enumerate(batch.iter_rows(named=True), start=offset):
                problem = None
                if (size := row.get(_SIZE)) is not None:
                    detail = (
                        f"row {index}: {size} bytes, over shards.max_file_bytes={self.max_bytes}"
                    )
                    problem = ("oversized", detail, size)
                yield (index, row, problem), (index + 1,)

    def _select(self, name: str, schema) -> list:
        """The columns a row needs, as polars expressions; content over the bound left out."""
        import polars as pl

        column = self.options.content_column
        if column not in schema:
            raise ValueError(
                f"{self.name} source: {name} has no column {column!r}"
                f" (set `content_column`; columns are {schema.names()})"
            )
        wanted = [c for c in (self.options.path_column, "repo_name", "blob_id") if c in schema]
        selected = [pl.col(c) for c in dict.fromkeys([*wanted, column])]
        dtype = schema[column]
        if dtype in (pl.String, pl.Binary) and self.max_bytes is not None:
            # Sizes come from the column, and content over the bound never becomes Python bytes.
            size = (
                pl.col(column).str.len_bytes() if dtype == pl.String else pl.col(column).bin.size()
            )
            over = size > self.max_bytes
            selected = [
                *[pl.col(c) for c in wanted if c != column],
                pl.when(over).then(None).otherwise(pl.col(column)).alias(column),
                pl.when(over).then(size).alias(_SIZE),
            ]
        return selected

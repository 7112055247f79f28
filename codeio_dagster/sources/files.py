"""Built-in raw-code sources: a folder of files, and JSONL or Parquet tables with a content column."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from codeio_dagster.sources.base import (
    RawFile,
    Source,
    SourceOptions,
    Unit,
    file_stamp,
    row_path,
)


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
    """Every file under a folder that matches a glob, in path order."""

    name = "folder"
    Options = FolderOptions
    options: FolderOptions

    def _matched(self) -> list[tuple[str, os.stat_result]]:
        """(relative path, stat) of the matched regular files, in Path order, one stat each."""
        root = self.options.path
        if not root.is_dir():
            raise FileNotFoundError(f"folder source: {root} is not a folder")
        # String slicing, not Path.relative_to: the listing runs every tick over every file.
        prefix = len(str(root).rstrip("/")) + 1
        found = []
        for path in root.glob(self.options.glob):
            try:
                st = path.stat()
            except FileNotFoundError:  # a dangling link, as `is_file()` would say
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((str(path)[prefix:], st))
        found.sort(key=lambda item: item[0].split("/"))
        return found

    def units(self) -> list[Unit]:
        return [Unit(rel, file_stamp(st.st_size, st.st_mtime_ns)) for rel, st in self._matched()]

    def unit_files(self, key: str) -> Iterator[RawFile]:
        content = (self.options.path / key).read_bytes()
        yield RawFile(path=key, content=content, origin={"file": key})

    def files(self) -> Iterator[RawFile]:
        for rel, _ in self._matched():
            yield from self.unit_files(rel)

    def provenance(self) -> dict[str, Any]:
        return {"source": self.name, "path": str(self.options.path), "glob": self.options.glob}


class TableOptions(SourceOptions):
    path: Path = Field(description="a file, or a folder read with `glob`")
    glob: str | None = None
    content_column: str = "content"
    path_column: str | None = "path"


class _TableSource(Source):
    """Rows of tables: one raw file per row, its text in `content_column`."""

    options: TableOptions
    suffix: str

    def _paths(self) -> list[Path]:
        target = self.options.path
        if target.is_file():
            return [target]
        if target.is_dir():
            return sorted(target.glob(self.options.glob or f"**/*{self.suffix}"))
        raise FileNotFoundError(f"{self.name} source: {target} does not exist")

    def _rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        raise NotImplementedError

    def _key(self, table: Path) -> str:
        target = self.options.path
        return table.name if table == target else table.relative_to(target).as_posix()

    def units(self) -> list[Unit]:
        units = []
        for table in self._paths():
            st = table.stat()
            units.append(Unit(self._key(table), file_stamp(st.st_size, st.st_mtime_ns)))
        return units

    def unit_files(self, key: str) -> Iterator[RawFile]:
        target = self.options.path
        yield from self._table_files(target if target.is_file() else target / key)

    def files(self) -> Iterator[RawFile]:
        for table in self._paths():
            yield from self._table_files(table)

    def _table_files(self, table: Path) -> Iterator[RawFile]:
        column, path_column = self.options.content_column, self.options.path_column
        # The key (path under the source folder), not the bare file name: a/part-0.jsonl and
        # b/part-0.jsonl are different tables, and their rows must not share ids.
        key = self._key(table)
        for index, row in self._rows(table):
            if column not in row:
                raise KeyError(
                    f"{self.name} source: {key} row {index} has no column {column!r}"
                    f" (set `content_column`; columns are {sorted(row)})"
                )
            content = row[column]
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
            name = row.get(path_column) if path_column else None
            origin = {"table": key, "row": index}
            origin.update({k: v for k, v in row.items() if k in ("repo_name", "blob_id") and v})
            yield RawFile(path=row_path(key, index, name), content=data, origin=origin)


class JsonlSource(_TableSource):
    """JSON Lines files; the CodeI/O authors' rawcode_1k format works as is."""

    name = "jsonl"
    Options = TableOptions
    suffix = ".jsonl"

    def _rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        with path.open("rb") as handle:
            for index, line in enumerate(handle):
                if line.strip():
                    try:
                        yield index, json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(
                            f"jsonl source: {path.name} line {index + 1}: {err}"
                        ) from err


_PARQUET_BATCH = 4096


class ParquetSource(_TableSource):
    """Parquet files, read in batches so a large file never sits in memory whole."""

    name = "parquet"
    Options = TableOptions
    suffix = ".parquet"

    def _rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        import polars as pl

        # Slices of a lazy scan read only the row groups they need and hold no file open
        # between batches, so a source abandoned mid-table (a tick's shard budget) leaks nothing.
        table = pl.scan_parquet(path)
        total = table.select(pl.len()).collect().item()
        for offset in range(0, total, _PARQUET_BATCH):
            batch = table.slice(offset, _PARQUET_BATCH).collect()
            yield from enumerate(batch.iter_rows(named=True), start=offset)

"""Built-in raw-code sources: a folder of files, and JSONL or Parquet tables with a content column."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from codeio_dagster.sources.base import RawFile, Source, SourceOptions


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

    def files(self) -> Iterator[RawFile]:
        root = self.options.path
        if not root.is_dir():
            raise FileNotFoundError(f"folder source: {root} is not a folder")
        for path in sorted(p for p in root.glob(self.options.glob) if p.is_file()):
            rel = path.relative_to(root).as_posix()
            yield RawFile(path=rel, content=path.read_bytes(), origin={"file": rel})

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

    def files(self) -> Iterator[RawFile]:
        column, path_column = self.options.content_column, self.options.path_column
        for table in self._paths():
            for index, row in self._rows(table):
                if column not in row:
                    raise KeyError(
                        f"{self.name} source: {table.name} row {index} has no column {column!r}"
                        f" (set `content_column`; columns are {sorted(row)})"
                    )
                content = row[column]
                data = (
                    content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
                )
                name = row.get(path_column) if path_column else None
                ident = f"{table.name}:{index}"
                origin = {"table": table.name, "row": index}
                origin.update({k: v for k, v in row.items() if k in ("repo_name", "blob_id") and v})
                yield RawFile(
                    path=f"{ident}:{name}" if name else ident, content=data, origin=origin
                )


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


class ParquetSource(_TableSource):
    """Parquet files, read in batches so a large file never sits in memory whole."""

    name = "parquet"
    Options = TableOptions
    suffix = ".parquet"

    def _rows(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow.parquet as pq

        index = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                yield index, row
                index += 1

"""Sources of functions already in a unified format: tables whose rows carry reference code,
its entry function's name, an input generator and/or I/O pairs, a problem statement and an I/O
description (the CodeI/O authors' released data, or a collection of your own).

Each row lands as one raw file whose content is the row's record in one JSON form (the columns
mapped to the pipeline's field names), marked in its origin with `format: unified`;
`unified_functions` imports such rows without an LLM request. A row whose columns cannot be read
(a mapped column absent, code that is not text, I/O pairs that are not a list of input/output
objects) lands as `bad_row` with the line or row and the option key in its detail.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codeio_dagster.sources.base import (
    FORMAT_KEY,
    UNIFIED,
    RawFile,
    Source,
    SourceOptions,
    Unit,
    rejection,
    row_path,
)
from codeio_dagster.sources.files import JsonlSource, ParquetSource, _parse_line
from codeio_dagster.sources.hub import HubRepoOptions, HubSource, _read


def _identifier(value: str, key: str) -> str:
    if not value.isidentifier() or keyword.iskeyword(value):
        raise ValueError(f"{key} must be a Python function name, got {value!r}")
    return value


class UnifiedColumns(BaseModel):
    """Which column holds each part of a function; the defaults are the CodeI/O release's."""

    model_config = ConfigDict(extra="forbid")

    reference_code: str = "refcode"
    entry_function: str | None = Field(
        "funcname", description="a column naming the entry function; unset: `entry_function`"
    )
    generator: str | None = Field(None, description="a column holding input-generator code")
    problem_statement: str = "problem_description"
    io_description: str = "io_requirements"
    ios: str | None = Field("ios", description="a column of [{input, output}] pairs")

    @field_validator("*")
    @classmethod
    def _named(cls, value: str | None, info) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"columns.{info.field_name} must name a column, got {value!r}")
        return value

    @model_validator(mode="after")
    def _usable(self) -> UnifiedColumns:
        if self.generator is None and self.ios is None:
            raise ValueError(
                "columns: map `generator` or `ios` (or both): a function needs an input "
                "generator or I/O pairs of its own"
            )
        by_column: dict[str, list[str]] = {}
        for key, column in self.mapped().items():
            by_column.setdefault(column, []).append(key)
        shared = {c: keys for c, keys in by_column.items() if len(keys) > 1}
        if shared:
            column, keys = next(iter(shared.items()))
            raise ValueError(
                f"columns.{keys[0]} and columns.{keys[1]} both name column {column!r}; "
                "each part needs its own column"
            )
        return self

    def mapped(self) -> dict[str, str]:
        """Option key -> column, for the parts that are mapped."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class GeneratorConvention(BaseModel):
    """How the generator is called: its name, and whether it takes a seeded `random.Random`."""

    model_config = ConfigDict(extra="forbid")

    name: str = "input_generator"
    argument: Literal["none", "rng"] = Field(
        "none", description="none: name(); rng: name(rng), rng a random.Random seeded per draw"
    )

    @field_validator("name")
    @classmethod
    def _function_name(cls, value: str) -> str:
        return _identifier(value, "generator.name")


class UnifiedFields(SourceOptions):
    """The options every unified-function source shares."""

    columns: UnifiedColumns = UnifiedColumns()
    entry_function: str = Field(
        "main_solution",
        description="the entry function's name when columns.entry_function is unset or empty",
    )
    generator: GeneratorConvention = GeneratorConvention()
    path_column: str | None = Field(None, description="a column naming the row, shown in paths")

    @field_validator("entry_function")
    @classmethod
    def _entry_name(cls, value: str) -> str:
        return _identifier(value, "entry_function")


class UnifiedOptions(UnifiedFields):
    """A local JSONL or Parquet table of unified functions, or a folder of them."""

    path: Path = Field(description="a table, or a folder of tables read with `glob`")
    glob: str | None = None
    format: Literal["jsonl", "parquet"] | None = Field(
        None, description="jsonl or parquet; read from the file name when `path` is a table"
    )

    @model_validator(mode="after")
    def _format_known(self) -> UnifiedOptions:
        if self.format is None:
            suffix = self.path.suffix.lower()
            if suffix in (".jsonl", ".ndjson"):
                self.format = "jsonl"
            elif suffix == ".parquet":
                self.format = "parquet"
            else:
                raise ValueError(
                    f"format: cannot tell it from path {str(self.path)!r}; set format: jsonl "
                    "or format: parquet"
                )
        if self.glob is not None and self.glob.startswith("/"):
            raise ValueError(f"glob must be relative to `path`, got {self.glob!r}")
        return self


class UnifiedHubOptions(UnifiedFields, HubRepoOptions):
    """A Hub dataset of unified functions (Parquet or JSONL files) at a pinned revision."""


# -- one row -> one landed record ----------------------------------------------------------------


class _BadRow(ValueError):
    pass


def _text(row: dict[str, Any], key: str, column: str, *, required: bool) -> str | None:
    if column not in row:
        raise _BadRow(
            f"no column {column!r} (columns.{key}; columns are {sorted(map(str, row))[:20]})"
        )
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _BadRow(f"column {column!r} (columns.{key}) is empty")
        return None
    if not isinstance(value, str):
        raise _BadRow(f"column {column!r} (columns.{key}) is {type(value).__name__}, not text")
    return value


def _pairs(value: Any, column: str) -> list[dict[str, str]] | None:
    """The I/O pairs of a cell, each value as canonical JSON text (the pipeline's form)."""
    from codeio_dagster.sandbox.values import canonical_json

    where = f"column {column!r} (columns.ios)"
    if value is None:
        return None
    if isinstance(value, str):  # pairs stored as JSON text (usual in Parquet)
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as err:
            raise _BadRow(f"{where} is text that is not JSON: {err}") from None
    if not isinstance(value, list):
        raise _BadRow(f"{where} is {type(value).__name__}, not a list of input/output pairs")
    pairs = []
    for i, pair in enumerate(value):
        if not isinstance(pair, dict) or "input" not in pair or "output" not in pair:
            raise _BadRow(f"{where}: pair {i} is not an object with `input` and `output`")
        try:
            pairs.append({k: canonical_json(pair[k])[0] for k in ("input", "output")})
        except (ValueError, TypeError, RecursionError) as err:
            raise _BadRow(f"{where}: pair {i}: {err}") from None
    return pairs or None


def unified_record(row: dict[str, Any], options: UnifiedFields) -> dict[str, Any]:
    """The record a row lands as; raises ValueError naming the column and option key."""
    columns = options.columns
    entry = options.entry_function
    if columns.entry_function is not None:
        entry = _text(row, "entry_function", columns.entry_function, required=False) or entry
    generator = None
    if columns.generator is not None:
        generator = _text(row, "generator", columns.generator, required=False)
    ios = None
    if columns.ios is not None:
        if columns.ios not in row:
            raise _BadRow(f"no column {columns.ios!r} (columns.ios)")
        ios = _pairs(row[columns.ios], columns.ios)
    return {
        "reference_code": _text(row, "reference_code", columns.reference_code, required=True),
        "entry_function": entry.strip(),
        "input_generator": generator,
        "generator_name": options.generator.name,
        "generator_argument": options.generator.argument,
        "problem_statement": _text(
            row, "problem_statement", columns.problem_statement, required=False
        ),
        "io_description": _text(row, "io_description", columns.io_description, required=False),
        "ios": ios,
    }


def unified_file(
    here: str, where: str, row: dict[str, Any], origin: dict[str, Any], options: UnifiedFields
) -> RawFile:
    """One row as a landed raw file holding its record, or a `bad_row` saying what is wrong."""
    origin = {**origin, FORMAT_KEY: UNIFIED}
    try:
        record = unified_record(row, options)
    except _BadRow as err:
        return rejection(here, "bad_row", f"{where}: {err}", origin)
    content = json.dumps(record, sort_keys=True, ensure_ascii=False)
    # surrogatepass: as for raw text, a lone surrogate becomes bytes raw_code calls bad_encoding.
    return RawFile(here, content.encode("utf-8", "surrogatepass"), origin)


# -- local tables --------------------------------------------------------------------------------


class _UnifiedRows:
    options: UnifiedFields

    def _row_file(self, here: str, where: str, row: dict[str, Any], origin: dict) -> RawFile:
        return unified_file(here, where, row, origin, self.options)


class _UnifiedJsonl(_UnifiedRows, JsonlSource):
    name = "unified"


class _UnifiedParquet(_UnifiedRows, ParquetSource):
    name = "unified"

    def _select(self, name: str, schema) -> list:
        import polars as pl

        mapped = self.options.columns.mapped()
        for key, column in mapped.items():
            if column not in schema:
                raise ValueError(
                    f"unified source: {name} has no column {column!r} (columns.{key}; columns "
                    f"are {schema.names()})"
                )
        extra = [c for c in (self.options.path_column, "repo_name", "blob_id") if c in schema]
        return [pl.col(c) for c in dict.fromkeys([*mapped.values(), *extra])]


class UnifiedSource(Source):
    """Rows of local JSONL or Parquet tables of unified functions, each landed as its record."""

    name: ClassVar[str] = "unified"
    Options: ClassVar[type[SourceOptions]] = UnifiedOptions
    options: UnifiedOptions

    def __init__(self, options: SourceOptions):
        super().__init__(options)
        reader = _UnifiedJsonl if self.options.format == "jsonl" else _UnifiedParquet
        # The table readers own listing, reading and resuming; this class only picks one.
        self._reader = reader(options)

    def _ready(self):
        self._reader.max_bytes = self.max_bytes
        return self._reader

    def files(self) -> Iterator[RawFile]:
        return self._ready().files()

    def units(self) -> list[Unit]:
        return self._ready().units()

    def unit_files(self, key: str) -> Iterator[RawFile]:
        return self._ready().unit_files(key)

    def read_unit(self, unit: Unit) -> Iterator[RawFile]:
        return self._ready().read_unit(unit)

    def position(self, key: str) -> str | None:
        return self._reader.position(key)

    def provenance(self) -> dict[str, Any]:
        opts = self.options
        return {"source": self.name, "path": str(opts.path), "format": opts.format}


# -- the Hub -------------------------------------------------------------------------------------


class UnifiedHubSource(HubSource):
    """Rows of a Hub dataset's Parquet or JSONL files, at a pinned commit, landed as records."""

    name: ClassVar[str] = "unified_hub"
    Options: ClassVar[type[SourceOptions]] = UnifiedHubOptions

    def unit_files(self, key: str) -> Iterator[RawFile]:
        api, sha, opts = self._api(), self.resolved_revision(), self.opts
        local = Path(
            api.hf_hub_download(
                opts.repo_id, key, repo_type="dataset", revision=sha, cache_dir=opts.cache_dir
            )
        )
        options: Any = self.options
        path_column = options.path_column
        for index, row, where in _hub_rows(local, key, options.columns.mapped()):
            origin = {"repo_id": opts.repo_id, "revision": sha, "file": key, "row": index}
            name = row.get(path_column) if isinstance(row, dict) and path_column else None
            here = row_path(key, index, name if isinstance(name, str) else None)
            if isinstance(row, str):  # the line's own problem
                yield rejection(here, "bad_row", row, {**origin, FORMAT_KEY: UNIFIED})
                continue
            yield unified_file(here, where, row, origin, options)


def _hub_rows(path: Path, key: str, mapped: dict[str, str]):
    """(row number, row or the reason it is unreadable, where) of a downloaded table."""
    if key.endswith(".parquet"):
        frame = _read(path, key)
        missing = {k: c for k, c in mapped.items() if c not in frame.columns}
        if missing:
            k, c = next(iter(missing.items()))
            raise KeyError(f"{key} has no column {c!r} (columns.{k}; columns are {frame.columns})")
        for index, row in enumerate(frame.iter_rows(named=True)):
            yield index, row, f"row {index}"
        return
    # JSON Lines read line by line, not as one frame: a frame would give every row the keys
    # of every other row's inputs (struct columns), which would change the functions' inputs.
    with path.open("rb") as handle:
        for index, line in enumerate(handle):
            if not line.strip():
                continue
            row, problem = _parse_line(line, index)
            yield index, (row if problem is None else problem[1]), f"line {index + 1}"

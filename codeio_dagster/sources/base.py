"""The raw-code source plugin family: a source yields files; the base class owns the rest."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class SourceOptions(BaseModel):
    """Options of a source, validated from the `sources:` entries of codeio.yaml."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class RawFile:
    """One file as a source found it; `content` stays bytes until the pipeline decodes it."""

    path: str
    content: bytes
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """A part of a source read on its own (a file, a table); `stamp` changes when its bytes do."""

    key: str
    stamp: str


def row_path(table: str, row: int, name: Any) -> str:
    """The path of one row of a table: table and row number make it unique, `name` helps read it."""
    # A row's own path column is not unique (setup.py in every repo), so it cannot be the id.
    ident = f"{table}:{row}"
    return f"{ident}:{name}" if name not in (None, "") else ident


def file_stamp(size: int, mtime_ns: int) -> str:
    """The stamp of a local file: size and modification time, read by `stat` alone."""
    return f"{size}:{mtime_ns}"


class Source(ABC):
    """A plugin implements `files()`; `scan()` adds the loop, timing and counters."""

    # A plugin that can list its units cheaply also implements `units()` and `unit_files()`;
    # the sensor then reads only units that are new or whose stamp changed since last landed.

    name: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, options: SourceOptions):
        self.options = options
        self.counters: dict[str, int] = {}
        self.seconds = 0.0
        self.units_done: list[Unit] = []

    @abstractmethod
    def files(self) -> Iterator[RawFile]:
        """Yield every raw file of the source, in a stable order."""

    def provenance(self) -> dict[str, Any]:
        """What pins this source's content (a revision, a glob); recorded in asset metadata."""
        return {"source": self.name}

    def units(self) -> list[Unit] | None:
        """Every unit in the order `files()` reads them, without reading contents; None: unknown."""
        return None

    def unit_files(self, key: str) -> Iterator[RawFile]:
        """The raw files of one unit listed by `units()`, in the order `files()` yields them."""
        raise NotImplementedError(f"{type(self).__name__} lists no units")

    def scan(self, units: Sequence[Unit] | None = None) -> Iterator[RawFile]:
        """Every file, or those of `units`; `units_done` grows as each unit is fully yielded."""
        start = time.perf_counter()
        self.counters = {"rows_in": 0}
        self.units_done = []
        try:
            if units is None:
                for raw in self.files():
                    self.counters["rows_in"] += 1
                    yield raw
                return
            for unit in units:
                for raw in self.unit_files(unit.key):
                    self.counters["rows_in"] += 1
                    yield raw
                self.units_done.append(unit)
        finally:
            self.seconds = time.perf_counter() - start

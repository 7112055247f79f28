"""The raw-code source plugin family: a source yields files; the base class owns the rest."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

# The origin key and value that mark a landed row as a function in the unified format, which
# unified_functions imports without an LLM request (set by sources/unified.py; a plugin may too).
FORMAT_KEY = "format"
UNIFIED = "unified"


class SourceOptions(BaseModel):
    """Options of a source, validated from the `sources:` entries of codeio.yaml."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class RawFile:
    """One file as a source found it; `content` stays bytes until the pipeline decodes it.

    A file the source would not or could not read (a link leaving its folder, a malformed table
    row, a file over `max_bytes`) is still yielded, with `rejected` set to the reason code,
    `detail` saying why, and no content, so that it lands as a row with its reason.
    """

    path: str
    content: bytes
    origin: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None
    detail: str | None = None
    size: int | None = None  # bytes of the original, when known without keeping them

    @property
    def size_bytes(self) -> int:
        return len(self.content) if self.size is None else self.size


def rejection(
    path: str, reason: str, detail: str, origin: dict[str, Any], *, size: int | None = None
) -> RawFile:
    """A file that lands as a row with `reason` and no content."""
    return RawFile(path, b"", origin, rejected=reason, detail=detail, size=size)


def raw_file(path: str, value: Any, origin: dict[str, Any]) -> RawFile:
    """The raw file of a table cell: text as UTF-8, bytes as they are, anything else rejected."""
    if isinstance(value, str):
        # surrogatepass: a lone surrogate (legal in JSON text) lands as bytes that are not
        # UTF-8, so raw_code calls it bad_encoding instead of the landing failing to encode it.
        return RawFile(path, value.encode("utf-8", "surrogatepass"), origin)
    if isinstance(value, bytes | bytearray):
        return RawFile(path, bytes(value), origin)
    if value is None:
        return RawFile(path, b"", origin)  # raw_code keeps it as `empty`
    # Never bytes(value): an integer N would become N NUL bytes.
    return rejection(
        path, "bad_row", f"content is {type(value).__name__}, not text or bytes", origin
    )


def safe_name(name: str) -> tuple[str, str | None]:
    """`name` made valid UTF-8 (bytes that are not shown as \\xNN), and the original bytes in hex."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # os.fsencode undoes the surrogateescape of file names; lone surrogates from elsewhere
        # (JSON text) are kept by surrogatepass, so either way the original bytes survive.
        raw = name.encode("utf-8", "surrogateescape" if _escaped(name) else "surrogatepass")
        return raw.decode("utf-8", "backslashreplace"), raw.hex()
    return name, None


def _escaped(name: str) -> bool:
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in name if 0xD800 <= ord(c) <= 0xDFFF)


class Unit(NamedTuple):  # a tuple, not a dataclass: a tick makes two per file of a folder
    """A part of a source read on its own (a file, a table); `stamp` changes when its bytes do.

    `position` is where reading it last stopped, in a form only its source reads (a byte offset
    and a check of the bytes before it, say), so an appended table is read from there on.
    """

    key: str
    stamp: str
    position: str | None = None


def row_path(table: str, row: int, name: Any) -> str:
    """The path of one row of a table: table and row number make it unique, `name` helps read it."""
    # A row's own path column is not unique (setup.py in every repo), so it cannot be the id.
    ident = f"{table}:{row}"
    return f"{ident}:{name}" if name not in (None, "") else ident


def file_stamp(size: int, mtime_ns: int) -> str:
    """The stamp of a local file: size and modification time, read by `stat` alone."""
    return f"{size}:{mtime_ns}"


class Source(ABC):
    """A plugin implements `files()`; `scan()` adds the loop, timing, counters and size bound."""

    # A plugin that can list its units cheaply also implements `units()` and `unit_files()`;
    # the sensor then reads only units that are new or whose stamp changed since last landed.
    # One that can also resume inside a unit implements `read_unit()` and `position()`.

    name: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, options: SourceOptions):
        self.options = options
        self.counters: dict[str, int] = {}
        self.seconds = 0.0
        self.units_done: list[Unit] = []
        self.unit_errors: list[tuple[str, Exception]] = []
        self.current: Unit | None = None
        # Set by the landing from `shards.max_file_bytes`: a file over it is rejected, and the
        # built-in sources check the size before reading the bytes.
        self.max_bytes: int | None = None

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

    def read_unit(self, unit: Unit) -> Iterator[RawFile]:
        """The raw files of `unit` from `unit.position` on (from the start when it is None)."""
        return self.unit_files(unit.key)

    def position(self, key: str) -> str | None:
        """Where reading unit `key` stands: just after the last file yielded; None: no resuming."""
        return None

    def partial_unit(self) -> Unit | None:
        """The unit a scan stopped inside, with an empty stamp (so it is read again) and where."""
        if self.current is None or (position := self.position(self.current.key)) is None:
            return None
        return Unit(self.current.key, "", position)

    def _bounded(self, raw: RawFile) -> RawFile:
        path, hex_name = safe_name(raw.path)
        if hex_name is not None:
            raw = replace(raw, path=path, origin={**raw.origin, "path_bytes": hex_name})
        if (
            raw.rejected is None
            and self.max_bytes is not None
            and len(raw.content) > self.max_bytes
        ):
            # A plugin that read more than the bound: only the rejection lands.
            return rejection(
                raw.path,
                "oversized",
                f"{len(raw.content)} bytes, over shards.max_file_bytes={self.max_bytes}",
                raw.origin,
                size=len(raw.content),
            )
        return raw

    def scan(self, units: Sequence[Unit] | None = None) -> Iterator[RawFile]:
        """Every file, or those of `units`; `units_done` grows as each unit is fully yielded.

        While it runs, `counters` holds rows_in, kept and dropped_<reason> (a file the source
        rejected) so far, and `seconds` the time spent inside the source, not in the consumer:
        the landing reads both per shard (`shards.land_new_shards`)."""
        self.counters = {"rows_in": 0, "kept": 0}
        self.seconds = 0.0
        self.units_done = []
        self.unit_errors = []
        self.current = None
        if units is None:
            yield from self._counted(self.files())
            return
        for unit in units:
            self.current = unit
            try:
                yield from self._counted(self.read_unit(unit))
            except Exception as err:
                # One unreadable unit (a table without the content column) holds back
                # neither the units after it nor the rows it yielded before failing.
                self.unit_errors.append((unit.key, err))
            else:
                self.units_done.append(Unit(unit.key, unit.stamp, self.position(unit.key)))
            self.current = None

    def _counted(self, files: Iterator[RawFile]) -> Iterator[RawFile]:
        clock = time.perf_counter
        started: float | None = clock()
        try:
            for raw in files:
                raw = self._bounded(raw)
                self.counters["rows_in"] += 1
                key = "kept" if raw.rejected is None else f"dropped_{raw.rejected}"
                self.counters[key] = self.counters.get(key, 0) + 1
                self.seconds += clock() - started
                started = None  # the consumer's time is not the source's
                yield raw
                started = clock()
        finally:
            if started is not None:
                self.seconds += clock() - started

"""The raw-code source plugin family: a source yields files; the base class owns the rest."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
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


class Source(ABC):
    """A plugin implements `files()`; `scan()` adds the loop, timing and counters."""

    name: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions

    def __init__(self, options: SourceOptions):
        self.options = options
        self.counters: dict[str, int] = {}
        self.seconds = 0.0

    @abstractmethod
    def files(self) -> Iterator[RawFile]:
        """Yield every raw file of the source, in a stable order."""

    def provenance(self) -> dict[str, Any]:
        """What pins this source's content (a revision, a glob); recorded in asset metadata."""
        return {"source": self.name}

    def scan(self) -> Iterator[RawFile]:
        start = time.perf_counter()
        self.counters = {"rows_in": 0}
        try:
            for raw in self.files():
                self.counters["rows_in"] += 1
                yield raw
        finally:
            self.seconds = time.perf_counter() - start

"""Small file-system helpers shared by every layer: config path fields and atomic replacement."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator


def _fspath(value: object) -> object:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# A path in a settings model: stored as a string because Dagster config has no path type, so
# the same model serves as YAML schema and resource config; a `Path` given in code is accepted.
PathStr = Annotated[str, BeforeValidator(_fspath)]


@contextmanager
def atomic_path(path: str | Path, *, create_only: bool = False) -> Iterator[Path]:
    """A temporary name next to `path`, renamed onto it when the block ends without error.

    Readers see the old file or the new one whole, never half of it. The temporary name is
    unique per write: writers sharing one would rename each other's half-written files. With
    `create_only`, an existing `path` is left alone and FileExistsError raised (an atomic
    create: of writers racing for a new name, exactly one succeeds).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        if create_only:
            os.link(tmp, path)  # fails if `path` exists, unlike a rename
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Replace `path` with `data` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)

"""A digest of the project's own source: what every asset's code version, and `codeio build`'s
up-to-date record, start from.

A module of its own rather than part of versions.py (which imports Dagster), so that an unchanged
`codeio build` can compare its record without importing Dagster at all.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

_PACKAGES = (
    "codeio_dagster",
    "codeio_dagster.assets",
    "codeio_dagster.sensors",
    "codeio_dagster.sandbox",
)
_SOURCE_SUFFIXES = {".py", ".md", ".sh"}


@functools.cache
def source_digest() -> str:
    """sha256 of every module, prompt and script of the project's packages (path and bytes)."""
    files: dict[str, Path] = {}
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            root = Path(location)
            for path in root.rglob("*"):
                if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                    files[f"{package}/{path.relative_to(root).as_posix()}"] = path
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()

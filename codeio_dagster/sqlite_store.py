"""The local SQLite files both result caches keep (LLM replies, sandbox results)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# SQLite caps the host parameters of one statement; 500 keeps every build's limit clear.
_CHUNK = 500


def open_wal(path: Path, schema: str) -> sqlite3.Connection:
    """A connection in WAL mode with a long busy timeout, so the processes of one machine share
    the file (readers never wait for the writer), and `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=60000")
    db.execute(schema)
    return db


def select_keys(
    db: sqlite3.Connection, columns: str, table: str, key: str, keys: Iterable[str]
) -> Iterator[tuple[Any, ...]]:
    """The rows of `table` whose `key` is one of `keys` (each asked once), in chunks."""
    wanted = list(dict.fromkeys(keys))
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        marks = ",".join("?" * len(chunk))
        yield from db.execute(f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})", chunk)

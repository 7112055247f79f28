"""Durable memory of what the sandbox ran: a reply per request, keyed by what determines it.

A key covers the whole request (code, input, every limit, the I/O-pair limits and seed), the
hash seed and jail kind it ran under, and the executor's identity: the fork-server's own source,
the runtime recipe, the isolation mode and the jail limits. Replies the host made up itself (a
jail that died or hung) are never stored. Storage sits behind `ResultCache`, so a shared
database can stand in for the local SQLite file.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from codeio_dagster.sqlite_store import open_wal, select_keys

# Bump when the key recipe or the stored reply changes, so old entries are never misread.
CACHE_FORMAT_VERSION = 1


def result_key(
    identity: Mapping[str, Any], hash_seed: int, heavy: bool, request: Mapping[str, Any]
) -> str:
    """sha256 hex over everything that decides a request's reply (the request id excluded)."""
    body = {k: v for k, v in request.items() if k != "id"}
    text = json.dumps(
        {
            "cache_format": CACHE_FORMAT_VERSION,
            "executor": dict(identity),
            "hash_seed": hash_seed,
            "heavy": heavy,
            "request": body,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultCache(ABC):
    """Where replies are kept: a key -> reply (plain JSON object) store, first writer wins."""

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored replies for those of `keys` that are present."""

    @abstractmethod
    def put_many(self, replies: Mapping[str, Mapping[str, Any]]) -> None:
        """Store replies; an existing key keeps its first reply."""

    def close(self) -> None:  # noqa: B027 - optional for stores without resources
        """Release the store's resources."""

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_results (
    result_key TEXT PRIMARY KEY,
    reply TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class SqliteResultCache(ResultCache):
    """A local SQLite file in WAL mode, safe to share between the processes of one machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = open_wal(self.path, _SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = select_keys(self._db, "result_key, reply", "sandbox_results", "result_key", keys)
        return {key: json.loads(reply) for key, reply in rows}

    def put_many(self, replies: Mapping[str, Mapping[str, Any]]) -> None:
        now = time.time()
        rows = [(k, json.dumps(dict(v), sort_keys=True), now) for k, v in replies.items()]
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO sandbox_results (result_key, reply, created_at) "
                "VALUES (?, ?, ?)",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM sandbox_results").fetchone()[0]

    def close(self) -> None:
        self._db.close()


def open_result_cache(data_dir: Any) -> ResultCache:
    """The project's sandbox result cache.

    Beside the stage tables when `data_dir` is a local folder; in this machine's cache folder
    (`$CODEIO_CACHE_DIR`, as the LLM cache) when `data_dir` is object storage, since SQLite needs
    a local file. A store shared by several machines plugs in as another `ResultCache`.
    """
    if isinstance(data_dir, Path):
        return SqliteResultCache(data_dir / "cache" / "sandbox_results.sqlite")
    from codeio_dagster.llm.settings import default_cache_dir

    return SqliteResultCache(default_cache_dir() / "sandbox_results.sqlite")

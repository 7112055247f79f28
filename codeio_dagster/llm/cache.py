"""Request keys and the durable request cache (SQLite in WAL mode, shared by processes)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codeio_dagster.llm.settings import SamplingParams

# Bump when the key recipe or the stored record changes, so old entries are never misread.
CACHE_FORMAT_VERSION = 1


def canonical_request(
    model: str, messages: Sequence[Mapping[str, str]], params: SamplingParams
) -> dict[str, Any]:
    """The whole request as plain JSON values: what the cache key is computed over."""
    sampling = params.model_dump(mode="json", exclude={"model"})
    return {
        "cache_format": CACHE_FORMAT_VERSION,
        "model": model,
        "messages": [dict(m) for m in messages],
        "sampling": sampling,
    }


def request_key(model: str, messages: Sequence[Mapping[str, str]], params: SamplingParams) -> str:
    """sha256 hex of the canonical JSON of the whole request."""
    text = json.dumps(
        canonical_request(model, messages, params),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    request_hash TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    content TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created_at REAL NOT NULL
)
"""
_COLUMNS = (
    "request_hash",
    "model",
    "status",
    "content",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)


class ResponseCache:
    """Completed (ok/truncated) replies by request hash; one connection per instance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        self._db.execute(_SCHEMA)

    def get_many(self, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored records for those of `hashes` that are cached."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM responses WHERE request_hash IN ({marks})",
                chunk,
            )
            for row in rows:
                found[row[0]] = dict(zip(_COLUMNS, row, strict=True))
        return found

    def put(self, record: Mapping[str, Any]) -> None:
        """Store one completed reply (the first writer of a hash wins)."""
        values = [record[c] for c in _COLUMNS] + [time.time()]
        self._db.execute(
            f"INSERT OR IGNORE INTO responses ({','.join(_COLUMNS)}, created_at) "
            f"VALUES ({','.join('?' * (len(_COLUMNS) + 1))})",
            values,
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

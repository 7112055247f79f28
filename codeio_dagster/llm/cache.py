"""Request keys and the durable request cache: SQLite (WAL, shared by the processes of one
machine, the embedded default) or PostgreSQL (shared by every machine of a cluster).

Both keep the same guarantees: one stored reply per request key, the first successful reply
wins (later writers of the same key are ignored), and a rerun repeats no successful call.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codeio_dagster.llm.sections import LLMSection, SamplingParams
from codeio_dagster.sqlite_store import open_wal, select_keys

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
    """Completed (ok/truncated) replies by request hash in SQLite; one connection per instance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = open_wal(self.path, _SCHEMA)

    def get_many(self, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored records for those of `hashes` that are cached."""
        rows = select_keys(self._db, ",".join(_COLUMNS), "responses", "request_hash", hashes)
        return {row[0]: dict(zip(_COLUMNS, row, strict=True)) for row in rows}

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


# PostgreSQL names the table; the columns are SQLite's, with the types PostgreSQL spells.
PG_TABLE = "codeio_llm_responses"
_PG_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {PG_TABLE} (
    request_hash TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    content TEXT,
    finish_reason TEXT,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
)
"""
# Any fixed number: it serialises the CREATE TABLE of processes starting at once, which
# PostgreSQL does not (two of them can both pass IF NOT EXISTS and one then fails).
_PG_SCHEMA_LOCK = 0x636F6465696F


class PostgresResponseCache:
    """The same cache in a PostgreSQL table, for many machines; `dsn` holds no password.

    libpq reads the password from `PGPASSWORD` (or `~/.pgpass`), so no secret is in the config.
    """

    def __init__(self, dsn: str) -> None:
        try:
            import psycopg2
        except ImportError as err:
            raise ImportError(
                "llm.cache_url (a PostgreSQL request cache) needs the cluster extra: "
                "pip install 'codeio-dagster[cluster]'"
            ) from err
        self.dsn = dsn
        try:
            self._db = psycopg2.connect(dsn, connect_timeout=30)
        except psycopg2.OperationalError as err:
            # libpq's message names host, port and cause, never the password.
            raise ConnectionError(f"LLM request cache: cannot connect to {dsn}: {err}") from None
        self._db.autocommit = True
        with self._db.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            cur.execute(_PG_SCHEMA)
            cur.execute("COMMIT")

    def get_many(self, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored records for those of `hashes` that are cached."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, dict[str, Any]] = {}
        with self._db.cursor() as cur:
            for i in range(0, len(wanted), 1000):
                cur.execute(
                    f"SELECT {','.join(_COLUMNS)} FROM {PG_TABLE} WHERE request_hash = ANY(%s)",
                    (wanted[i : i + 1000],),
                )
                for row in cur.fetchall():
                    found[row[0]] = dict(zip(_COLUMNS, row, strict=True))
        return found

    def put(self, record: Mapping[str, Any]) -> None:
        """Store one completed reply (the first writer of a hash wins)."""
        values = [record[c] for c in _COLUMNS] + [time.time()]
        with self._db.cursor() as cur:
            cur.execute(
                f"INSERT INTO {PG_TABLE} ({','.join(_COLUMNS)}, created_at) "
                f"VALUES ({','.join(['%s'] * (len(_COLUMNS) + 1))}) "
                "ON CONFLICT (request_hash) DO NOTHING",
                values,
            )

    def __len__(self) -> int:
        with self._db.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {PG_TABLE}")
            return cur.fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PostgresResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cache(settings: LLMSection) -> ResponseCache | PostgresResponseCache | None:
    """The cache the settings select: none, PostgreSQL (`cache_url`) or the SQLite file."""
    if not settings.use_cache:
        return None
    if settings.cache_url:
        return PostgresResponseCache(settings.cache_url)
    return ResponseCache(settings.resolved_cache_path())

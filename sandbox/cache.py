"""Durable memory of what the sandbox ran: a reply per request, keyed by what determines it.

A key covers the whole request (code, input, every limit, the I/O-pair limits and seed), the
hash seed and what its jail's template preloaded, and the executor's identity: the
fork-server's own source, the runtime recipe, the isolation mode and the jail limits. Replies
the host made up itself (a jail that died or hung) are never stored. A reply decided by a time
or memory limit depends on the machine's load as much as on the request: it is kept, but served
only once a second run got the same kind of reply (`LIMIT_RUNS`); a reply within the limits
replaces it. Storage sits behind `ResultCache`, so a shared database can stand in for the local
SQLite file.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codeio_dagster.sqlite_store import open_wal, select_keys

# Bump when the key recipe or the stored reply changes, so old entries are never misread.
CACHE_FORMAT_VERSION = 2
# Runs that must end at a limit before that reply is served from the cache.
LIMIT_RUNS = 2
_LIMIT_STATUSES = ("timeout", "memory")


def hit_a_limit(reply: Mapping[str, Any]) -> bool:
    """Whether a time or memory limit decided (part of) this reply, so load may have."""
    if reply.get("status") in _LIMIT_STATUSES or reply.get("stopped_by_wall_clock"):
        return True
    counts = reply.get("counts")
    if isinstance(counts, Mapping) and any(
        counts.get(f"dropped_{status}") for status in _LIMIT_STATUSES
    ):
        return True  # an I/O-pair generation that lost draws to a limit
    results = reply.get("results")
    return isinstance(results, list) and any(
        isinstance(r, Mapping) and r.get("status") in _LIMIT_STATUSES for r in results
    )


def result_key(
    identity: Mapping[str, Any],
    hash_seed: int,
    preload: Sequence[str],
    request: Mapping[str, Any],
) -> str:
    """sha256 hex over everything that decides a request's reply (the request id excluded).

    `preload` is what the template the job forks from imported, in order: a job can see it
    (`sys.modules`), so two preloads are two keys.
    """
    body = {k: v for k, v in request.items() if k != "id"}
    text = json.dumps(
        {
            "cache_format": CACHE_FORMAT_VERSION,
            "executor": dict(identity),
            "hash_seed": hash_seed,
            "preload": list(preload),
            "request": body,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultCache(ABC):
    """Where replies are kept: a key -> reply (plain JSON object) store.

    The first reply within the limits stored under a key stays. A reply that `hit_a_limit` is
    provisional: `get_many` leaves it out until it was stored by `LIMIT_RUNS` runs (the last
    one is kept), and a reply within the limits stored later replaces it.
    """

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored replies, provisional ones left out, for those of `keys` that are present."""

    @abstractmethod
    def put_many(self, replies: Mapping[str, Mapping[str, Any]]) -> None:
        """Store replies by the rule above."""

    def close(self) -> None:  # noqa: B027 - optional for stores without resources
        """Release the store's resources."""

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# `runs` counts the runs that stored a provisional reply; `final` marks a reply to serve. (The
# first format's table, sandbox_results, had neither and is left alone.)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_replies (
    result_key TEXT PRIMARY KEY,
    reply TEXT NOT NULL,
    created_at REAL NOT NULL,
    runs INTEGER NOT NULL,
    final INTEGER NOT NULL
)
"""
_UPSERT = f"""
INSERT INTO sandbox_replies (result_key, reply, created_at, runs, final)
VALUES (?, ?, ?, 1, ?)
ON CONFLICT (result_key) DO UPDATE SET
    reply = excluded.reply,
    created_at = excluded.created_at,
    runs = sandbox_replies.runs + 1,
    final = excluded.final OR sandbox_replies.runs + 1 >= {LIMIT_RUNS}
WHERE NOT sandbox_replies.final
"""


class SqliteResultCache(ResultCache):
    """A local SQLite file in WAL mode, safe to share between the processes of one machine."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = open_wal(self.path, _SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = select_keys(
            self._db, "result_key, reply, final", "sandbox_replies", "result_key", keys
        )
        return {key: json.loads(reply) for key, reply, final in rows if final}

    def put_many(self, replies: Mapping[str, Mapping[str, Any]]) -> None:
        now = time.time()
        rows = [
            (k, json.dumps(dict(v), sort_keys=True), now, int(not hit_a_limit(v)))
            for k, v in replies.items()
        ]
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany(_UPSERT, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM sandbox_replies").fetchone()[0]

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
    from codeio_dagster.llm.sections import default_cache_dir

    return SqliteResultCache(default_cache_dir() / "sandbox_results.sqlite")

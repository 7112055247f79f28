"""Dagster's SQLite instance storage, keeping one SQLAlchemy engine per database file and process.

Dagster's SQLite storages build a new engine for every query (`create_engine(..., NullPool)`), so
every query also sets up a dialect and compiles its statement afresh: about 7 ms of CPU per event
written and per `has_dynamic_partition` on this machine, some 400 times in a shard's run (events,
and the partition lookups Dagster makes for every input and output of a dynamically partitioned
asset). Keeping the engine halves that. The engines here still use NullPool, as Dagster's do: a
connection is opened for each use and closed after it, so no connection is shared between
threads or inherited by a forked process, and no process holds the files open between queries
(in WAL mode the last connection to close checkpoints the log into the database, which the
build's up-to-date digest of the files relies on); only the engine (its dialect and
compiled-statement cache) is kept. A process that writes many events in a short life, a run's,
can ask to hold each database open besides (`keep_databases_open`), which spares each write the
log's merge and restart and still leaves the files merged once it ends; a long-lived process
(the webserver, the daemon) must not, or the logs would stay unmerged while it lives. The files,
their schema and their migrations are Dagster's own: a home can switch between these classes and
Dagster's defaults at any time (remove `storage:` from its dagster.yaml).

Dagster also asks alembic for the head revision of its migrations at every storage it opens,
and at the first use of every run's event database, and alembic reads and compiles all of
Dagster's ~90 migration scripts each time (70 ms of CPU here; about ten times in a build, its
code server and its run). The scripts are the installed package's and do not change while a
process lives, so these classes load each script directory once per process
(`share_alembic_scripts`).

`codeio build` writes these classes into the dagster.yaml of a new DAGSTER_HOME. They override
Dagster internals (`SqliteEventLogStorage._connect`, the directory helpers of its SQLite storage),
which is why pyproject pins Dagster below the next minor version and why
tests/core/test_instance_storage.py writes and reads through both these classes and Dagster's.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SqliteEventLogStorage as _DagsterEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import (
    SqliteRunStorage as _DagsterRunStorage,
)
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import (
    SqliteScheduleStorage as _DagsterScheduleStorage,
)
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage as _DagsterSqliteStorage
from dagster._core.storage.sqlite_storage import (
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._utils import mkdir_p
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

# A long-lived process (the webserver) touches the event database of every run it shows; keep
# the engines of the most recent ones only.
MAX_ENGINES = 64


class EngineCache:
    """Engines by connection string, for this process only (a forked child builds its own)."""

    def __init__(self, max_engines: int = MAX_ENGINES, **engine_args: Any):
        self.max_engines = max_engines
        self.engine_args = engine_args
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, conn_string: str) -> Engine:
        with self._lock:
            if self._pid != os.getpid():
                self._engines.clear()
                self._pid = os.getpid()
            engine = self._engines.get(conn_string)
            if engine is None:
                engine = create_engine(conn_string, poolclass=NullPool, **self.engine_args)
                event.listen(engine, "connect", _sync_at_checkpoints)
                path = engine.url.database
                if path and path != ":memory:":
                    event.listen(engine, "connect", lambda *_: _keep_open_if_asked(path))
                self._engines[conn_string] = engine
                while len(self._engines) > self.max_engines:
                    self._engines.popitem(last=False)
            else:
                self._engines.move_to_end(conn_string)
            return engine


def _sync_at_checkpoints(dbapi_connection, _record) -> None:
    # SQLite's default (synchronous=FULL) flushes the write-ahead log to the disk at every
    # commit: 3.7 ms of waiting per event on this machine's disk, some 300 times in a shard's
    # run. NORMAL flushes at checkpoints only. In WAL mode that loses nothing when a process
    # crashes or is killed and never corrupts the database; only the last commits before a
    # power loss or OS crash may be rolled back (https://www.sqlite.org/pragma.html#pragma_synchronous).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# The databases `keep_databases_open` holds open in this process, by path.
_kept: dict[str, sqlite3.Connection] = {}
_kept_by_pid: int | None = None
_kept_lock = threading.Lock()


def keep_databases_open() -> None:
    """Hold each SQLite database this process opens through these classes open until it ends.

    Each query still has a connection of its own, opened and closed around it; what changes is
    that it is no longer the last connection to the file. In WAL mode the last connection to
    close merges the log into the database, and the next first one opens the log afresh: about
    2.5 ms of every event a run writes (3.9 against 1.1-1.5 ms per event, measured), most of a
    run's Dagster overhead. The connection kept is idle: it holds no lock and no transaction,
    so it delays nobody's writes or checkpoints. It closes when the process ends (as a run's
    process does before its code server stops and the build stamps the files), which merges
    the log as before; a process killed first leaves the log, which the next connection reads.

    For run processes (warm_runs calls it as a run starts): a long-lived process that kept its
    databases open would keep their logs unmerged, and the build's up-to-date digest changing.
    A process that called it also remembers the dynamic partitions it has found
    (SqliteEventLogStorage.has_dynamic_partition)."""
    global _kept_by_pid
    from multiprocessing.util import Finalize

    with _kept_lock:
        if _kept_by_pid == os.getpid():
            return
        _kept_by_pid = os.getpid()
        _kept.clear()  # a parent's, never closed here
    Finalize(None, close_kept_databases, exitpriority=10)


def close_kept_databases() -> None:
    """Close what `keep_databases_open` holds in this process (at exit, or sooner)."""
    with _kept_lock:
        if _kept_by_pid != os.getpid():
            return
        while _kept:
            _kept.popitem()[1].close()


def _keep_open_if_asked(path: str) -> None:
    if _kept_by_pid != os.getpid() or path in _kept:
        return
    with _kept_lock:
        if path in _kept or _kept_by_pid != os.getpid():
            return
        conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        try:
            # A database not yet in WAL mode (one being made) is left alone: switching to WAL
            # wants no other connection open.
            keep = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error:
            keep = False
        if keep:
            _kept[path] = conn
        else:
            conn.close()


@contextmanager
def _transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


class _KeptEngineConnect:
    """`connect()` through a kept engine: the one change to Dagster's run and schedule storage."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data=None):
        self._engines = EngineCache(max_engines=1)
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with _transaction(self._engines.get(self._conn_string)) as conn:
            yield conn


class SqliteRunStorage(_KeptEngineConnect, _DagsterRunStorage):
    """Dagster's SQLite run storage with its engine kept (see the module docstring)."""


class SqliteScheduleStorage(_KeptEngineConnect, _DagsterScheduleStorage):
    """Dagster's SQLite schedule storage with its engine kept (see the module docstring)."""


class SqliteEventLogStorage(_DagsterEventLogStorage):
    """Dagster's SQLite event log (one database per run and an index) with its engines kept."""

    def __init__(self, base_dir: str, inst_data=None):
        share_alembic_scripts()
        self._engines = EngineCache(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        self._tables: set[str] = set()
        # The dynamic partitions a run's process has found (has_dynamic_partition).
        self._partitions_found: set[tuple[str, str]] = set()
        # The open connections of the batch being stored (store_event_batch), by shard.
        self._batch: dict[str, Connection] | None = None
        self._batch_thread: int | None = None
        super().__init__(base_dir, inst_data)

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.get(self.conn_string_for_shard(shard))
        if shard not in self._initialized_dbs:  # as Dagster's: a database made on first use
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        if self._batch is not None and self._batch_thread == threading.get_ident():
            conn = self._batch.get(shard)
            if conn is None:
                conn = self._batch[shard] = self._engine(shard).connect()
                conn.begin()
            yield conn
            return
        # As Dagster's: one lock for the watcher threads.
        with self._db_lock, _transaction(self._engine(shard)) as conn:
            yield conn

    def store_event_batch(self, events) -> None:
        """The events in one transaction per database, instead of one each.

        Dagster hands a run's planned events (one per asset and check it will run; 32 for a
        shard's run) to this when `DAGSTER_EVENT_BATCH_SIZE` is set (`codeio build` sets it):
        one by one they cost a connection, a commit and a checkpoint each, about 10 ms on the
        critical path of every launch. Each event is stored as `store_event` stores it; if any
        fails, nothing of the batch is kept and Dagster stores the events one by one."""
        # Held throughout, as Dagster holds it around each connection: no other thread's
        # connection waits on this batch's open transactions while this one waits for it.
        with self._db_lock:
            self._batch, self._batch_thread = {}, threading.get_ident()
            try:
                for one in events:
                    self.store_event(one)
                for conn in self._batch.values():
                    conn.commit()
            finally:
                batch, self._batch, self._batch_thread = self._batch, None, None
                for conn in batch.values():
                    conn.close()  # rolls back what was not committed

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        # Dagster asks for every input and output of a dynamically partitioned asset, twice each
        # (a range's start and end, the same key): about 0.4 s of a shard's run, one query at a
        # time on its critical path. A run's process remembers the keys it found: its shard
        # exists while it runs (a shard deleted meanwhile is still materialised to its end, as
        # the steps already done were). Other processes ask the database every time.
        known = (partitions_def_name, partition_key)
        if _kept_by_pid == os.getpid() and known in self._partitions_found:
            return True
        found = super().has_dynamic_partition(partitions_def_name, partition_key)
        if found and _kept_by_pid == os.getpid():
            self._partitions_found.add(known)
        return found

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._partitions_found.discard((partitions_def_name, partition_key))
        super().delete_dynamic_partition(partitions_def_name, partition_key)

    def wipe(self) -> None:
        self._tables.clear()
        self._partitions_found.clear()
        super().wipe()

    def has_table(self, table_name: str) -> bool:
        # Asked before every dynamic-partition lookup; a table, once there, stays.
        if table_name in self._tables:
            return True
        engine = self._engines.get(self.conn_string_for_shard(INDEX_SHARD_NAME))
        with engine.connect() as conn:
            found = bool(engine.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found


_SHARED_SCRIPTS: dict[tuple, Any] = {}
_SHARED_SCRIPTS_LOCK = threading.Lock()


def share_alembic_scripts() -> None:
    """Make alembic load each of Dagster's migration script directories once in this process.

    `ScriptDirectory.from_config` builds a new directory, whose revision map reads every script,
    for each call; Dagster calls it to learn the head revision whenever it opens a storage or a
    run's event database. Directories outside the dagster package are left to alembic as they
    were. Idempotent."""
    import dagster
    from alembic.script import ScriptDirectory

    with _SHARED_SCRIPTS_LOCK:
        if getattr(ScriptDirectory.from_config, "_codeio_shared", False):
            return
        original = ScriptDirectory.from_config.__func__
        dagster_dir = os.path.dirname(dagster.__file__) + os.sep

        def from_config(cls, config):
            location = config.get_main_option("script_location") or ""
            # Dagster names its scripts as a package resource ("dagster:_core/storage/alembic").
            ours = location.startswith(("dagster:", dagster_dir))
            if cls is not ScriptDirectory or not ours:
                return original(cls, config)
            # What a directory is made from, in which Dagster's three alembic.ini files agree
            # (`here`, their folder, differs; the values that used it are interpolated).
            key = tuple(
                tuple(
                    sorted(kv for kv in config.get_section(section, {}).items() if kv[0] != "here")
                )
                for section in (config.config_ini_section, "post_write_hooks")
            )
            with _SHARED_SCRIPTS_LOCK:
                script = _SHARED_SCRIPTS.get(key)
            if script is None:
                script = original(cls, config)
                script.revision_map.heads  # noqa: B018 - read the scripts now, once
                with _SHARED_SCRIPTS_LOCK:
                    script = _SHARED_SCRIPTS.setdefault(key, script)
            return script

        from_config._codeio_shared = True
        ScriptDirectory.from_config = classmethod(from_config)


# Taken while a process opens the storage under base_dir (DagsterSqliteStorage).
STORAGE_LOCK = ".codeio-storage.lock"


@contextmanager
def _storage_lock(base_dir: str) -> Iterator[None]:
    """One process at a time opens (and so perhaps creates) the storage in base_dir.

    Two processes creating a new home's databases at once collide: each stamps the new files'
    schema version, and alembic then finds "more than one head". Under this lock the second
    finds the files made. `codeio build` relies on it to open the instance while its code server
    opens the same new home (home.storage_made_under_lock)."""
    mkdir_p(base_dir)
    fd = os.open(os.path.join(base_dir, STORAGE_LOCK), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class DagsterSqliteStorage(_DagsterSqliteStorage):
    """The instance's SQLite storage (runs, event logs, schedules under `base_dir`, the files
    Dagster's default uses), made of the classes above."""

    def __init__(self, base_dir: str, inst_data=None):
        share_alembic_scripts()
        # Not Dagster's __init__, which would open the same files with its own classes first.
        self.base_dir = base_dir
        with _storage_lock(base_dir):
            self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
            self._event_log_storage = SqliteEventLogStorage(_event_logs_directory(base_dir))
            self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(_DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(cls, base_dir: str, inst_data=None):
        mkdir_p(base_dir)
        return cls(base_dir, inst_data=inst_data)

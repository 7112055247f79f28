"""The SQLite instance storage a new DAGSTER_HOME gets: Dagster's files, engines kept per process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import DagsterRun
from sqlalchemy import event as sqlalchemy_event

from codeio_dagster import instance_storage
from codeio_dagster.home import dagster_home, default_storage_ready


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return dagster_home()


def _log(run_id: str, text: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message=text,
        run_id=run_id,
        timestamp=time.time(),
        step_key="raw_code",
        job_name="codeio_job",
        dagster_event=None,
    )


def _materialize(instance, run_id: str, partition: str) -> None:
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="codeio_job",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key="raw_code", partition=partition)
        ),
    )
    instance.report_dagster_event(event, run_id=run_id)


def _write(instance, run_id: str, partition: str) -> None:
    instance.add_run(DagsterRun(job_name="codeio_job", run_id=run_id))
    instance.add_dynamic_partitions("rawcode", [partition])
    instance.handle_new_event(_log(run_id, f"hello from {run_id}"))
    _materialize(instance, run_id, partition)


def _read(instance) -> dict:
    return {
        "runs": sorted(r.run_id for r in instance.get_runs()),
        "partitions": sorted(instance.get_dynamic_partitions("rawcode")),
        "messages": sorted(
            record.event_log_entry.user_message
            for run in instance.get_runs()
            for record in instance.get_records_for_run(run.run_id).records
            if record.event_log_entry.user_message.startswith("hello")
        ),
        "materialized": sorted(instance.get_materialized_partitions(dg.AssetKey("raw_code"))),
    }


def test_a_new_home_stores_in_dagster_sqlite_files_through_these_classes(home):
    instance = dg.DagsterInstance.get()
    try:
        assert isinstance(instance.run_storage, instance_storage.SqliteRunStorage)
        assert isinstance(instance.event_log_storage, instance_storage.SqliteEventLogStorage)
        assert isinstance(instance.schedule_storage, instance_storage.SqliteScheduleStorage)
        _write(instance, "run-a", "rawcode-00000")
    finally:
        instance.dispose()
    # The files of Dagster's default storage, so the build's up-to-date shortcut still applies.
    assert default_storage_ready(home)
    assert (home / "history" / "runs" / "run-a.db").is_file()


def test_dagster_default_classes_and_these_read_each_others_writes(home):
    with dg.DagsterInstance.get() as instance:
        _write(instance, "run-a", "rawcode-00000")
    kept = (home / "dagster.yaml").read_text()
    # What the dagster.yaml comment promises: remove `storage:` and Dagster's own classes
    # open the same files.
    (home / "dagster.yaml").write_text("")
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__module__.startswith("dagster.")
        assert _read(instance) == {
            "runs": ["run-a"],
            "partitions": ["rawcode-00000"],
            "messages": ["hello from run-a"],
            "materialized": ["rawcode-00000"],
        }
        _write(instance, "run-b", "rawcode-00001")
    (home / "dagster.yaml").write_text(kept)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, instance_storage.SqliteRunStorage)
        assert _read(instance) == {
            "runs": ["run-a", "run-b"],
            "partitions": ["rawcode-00000", "rawcode-00001"],
            "messages": ["hello from run-a", "hello from run-b"],
            "materialized": ["rawcode-00000", "rawcode-00001"],
        }


def test_queries_reuse_one_engine_per_database(home, monkeypatch):
    built = []
    real = instance_storage.create_engine

    def counting(url, *args, **kwargs):
        built.append(str(url).rsplit("/", 1)[-1])
        return real(url, *args, **kwargs)

    monkeypatch.setattr(instance_storage, "create_engine", counting)
    with dg.DagsterInstance.get() as instance:
        _write(instance, "run-a", "rawcode-00000")
        built.clear()
        for i in range(30):
            instance.handle_new_event(_log("run-a", f"hello {i}"))
            assert instance.has_dynamic_partition("rawcode", "rawcode-00000")
            assert instance.get_run_by_id("run-a") is not None
        # Dagster's classes build an engine per query: about 120 here.
        assert built == []
        assert len(_read(instance)["messages"]) == 31


def test_commits_wait_for_the_disk_at_checkpoints_only_and_the_log_stays_wal(home):
    """synchronous=NORMAL on every connection these classes open, in WAL mode (see
    `_sync_at_checkpoints`); Dagster's own classes leave SQLite's default, FULL (2)."""
    from sqlalchemy import text

    with dg.DagsterInstance.get() as instance:
        _write(instance, "run-a", "rawcode-00000")
        events = instance.event_log_storage
        engines = [
            instance.run_storage._engines.get(instance.run_storage._conn_string),
            events._engines.get(events.conn_string_for_shard("run-a")),
            events._engines.get(events.conn_string_for_shard(instance_storage.INDEX_SHARD_NAME)),
        ]
        for engine in engines:
            with engine.connect() as conn:
                assert conn.execute(text("PRAGMA synchronous")).scalar() == 1
                assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    (home / "dagster.yaml").write_text("")
    with dg.DagsterInstance.get() as instance, instance.run_storage.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_process_builds_its_own_engine(tmp_path):
    cache = instance_storage.EngineCache()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    parent = cache.get(url)
    assert cache.get(url) is parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got the parent's engine, and that it works
        try:
            engine = cache.get(url)
            with engine.connect() as conn:
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                conn.commit()
            os.write(write_end, b"same" if engine is parent else b"own")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 16)
    os.waitpid(pid, 0)
    assert answer == b"own"
    with parent.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0


def test_the_engines_kept_are_bounded_most_recent_first(tmp_path):
    cache = instance_storage.EngineCache(max_engines=3)
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(5)]
    first = {url: cache.get(url) for url in urls[:3]}
    cache.get(urls[0])  # used again: now the most recent
    cache.get(urls[3])
    cache.get(urls[4])
    assert cache.get(urls[0]) is first[urls[0]]
    assert cache.get(urls[1]) is not first[urls[1]]


def test_after_a_wipe_runs_and_events_are_stored_and_read_again(home):
    with dg.DagsterInstance.get() as instance:
        _write(instance, "run-a", "rawcode-00000")
        instance.wipe()
        assert _read(instance) == {"runs": [], "partitions": [], "messages": [], "materialized": []}
        # The run database is made again on first use, and the partitions table is still
        # found (a wipe forgets the tables this storage has seen).
        _write(instance, "run-b", "rawcode-00001")
        assert instance.has_dynamic_partition("rawcode", "rawcode-00001")
        assert _read(instance) == {
            "runs": ["run-b"],
            "partitions": ["rawcode-00001"],
            "messages": ["hello from run-b"],
            "materialized": ["rawcode-00001"],
        }


def _report_batch(instance, run_id: str, partitions: list[str]) -> None:
    """Materialisations of `partitions` reported as one batch, as Dagster reports planned events."""
    from dagster._core.events import DagsterEventBatchMetadata, generate_event_batch_id

    batch_id = generate_event_batch_id()
    for i, partition in enumerate(partitions):
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="codeio_job",
            event_specific_data=StepMaterializationData(
                dg.AssetMaterialization(asset_key="raw_code", partition=partition)
            ),
        )
        metadata = DagsterEventBatchMetadata(batch_id, i == len(partitions) - 1)
        instance.report_dagster_event(event, run_id=run_id, batch_metadata=metadata)


def test_a_batch_of_events_takes_one_connection_per_database_and_dagster_reads_it(
    home, monkeypatch
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    partitions = [f"rawcode-{i:05d}" for i in range(12)]
    with dg.DagsterInstance.get() as instance:
        instance.add_run(DagsterRun(job_name="codeio_job", run_id="run-a"))
        instance.add_dynamic_partitions("rawcode", partitions)
        instance.handle_new_event(_log("run-a", "hello from run-a"))  # the databases exist
        opened = []
        for engine in instance.event_log_storage._engines._engines.values():
            sqlalchemy_event.listen(engine, "connect", lambda *_: opened.append(1))
        _report_batch(instance, "run-a", partitions)
        # The run's database and the index, once each; one by one it was 2 per event.
        assert len(opened) == 2
    (home / "dagster.yaml").write_text("")  # Dagster's own classes read what the batch wrote
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__module__.startswith("dagster.")
        stored = [
            r.event_log_entry.dagster_event.partition
            for r in instance.get_records_for_run("run-a").records
            if r.event_log_entry.dagster_event is not None
        ]
        assert stored == partitions
        materialized = instance.get_materialized_partitions(dg.AssetKey("raw_code"))
        assert sorted(materialized) == partitions


def test_a_batch_that_fails_halfway_keeps_nothing_and_dagster_stores_it_event_by_event(
    home, monkeypatch, capfd
):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    partitions = [f"rawcode-{i:05d}" for i in range(6)]
    real = instance_storage.SqliteEventLogStorage.store_event
    calls = []

    def fails_once_at_the_fourth(self, event):
        calls.append(event.dagster_event.partition)
        if len(calls) == 4:
            raise OSError("disk went away for a moment")
        return real(self, event)

    monkeypatch.setattr(
        instance_storage.SqliteEventLogStorage, "store_event", fails_once_at_the_fourth
    )
    with dg.DagsterInstance.get() as instance:
        instance.add_run(DagsterRun(job_name="codeio_job", run_id="run-a"))
        instance.add_dynamic_partitions("rawcode", partitions)
        _report_batch(instance, "run-a", partitions)
        stored = [
            r.event_log_entry.dagster_event.partition
            for r in instance.get_records_for_run("run-a").records
        ]
        materialized = instance.get_materialized_partitions(dg.AssetKey("raw_code"))
    # The three stored before the failure were rolled back with it: each is there once.
    assert stored == partitions
    assert sorted(materialized) == partitions
    assert (
        "Falling back to storing multiple single-event storage requests" in capfd.readouterr().err
    )


def test_dagsters_migration_scripts_are_read_once_per_process(home, monkeypatch):
    from alembic.script.base import ScriptDirectory

    read = []
    real = ScriptDirectory._load_revisions

    def counting(self):
        read.append(self.dir)
        return real(self)

    monkeypatch.setattr(ScriptDirectory, "_load_revisions", counting)
    monkeypatch.setattr(instance_storage, "_SHARED_SCRIPTS", {})
    for run_id in ("run-a", "run-b"):  # two instances, three storages each, two run databases
        with dg.DagsterInstance.get() as instance:
            _write(instance, run_id, "rawcode-00000")
    # Dagster's own classes read them for every storage and every new run database: 8 times.
    assert len(read) == 1


KEEP_OPEN_WRITER = """
import multiprocessing, os, sys
import dagster as dg
from codeio_dagster import instance_storage
from tests.core.test_instance_storage import _log, _write


def work(mode):
    if mode == "keep":
        instance_storage.keep_databases_open()
    wal = os.path.join(os.environ["DAGSTER_HOME"], "history", "runs", "run-a.db-wal")
    with dg.DagsterInstance.get() as instance:
        _write(instance, "run-a", "rawcode-00000")
        for i in range(5):
            instance.handle_new_event(_log("run-a", f"hello {i}"))
        print("WAL between events:", os.path.exists(wal), flush=True)
    if mode == "keep":
        # A forked child that ends normally (its exit handlers run) closes nothing it inherited.
        pid = os.fork()
        if pid == 0:
            instance_storage.close_kept_databases()
            sys.exit(0)
        os.waitpid(pid, 0)
        for conn in instance_storage._kept.values():
            conn.execute("SELECT 1")  # still open: closed, it would raise ProgrammingError
        kept = sorted(os.path.basename(p) for p in instance_storage._kept)
        print("kept after a child ended:", kept, flush=True)


# As a run's process ends: a multiprocessing child, which leaves by os._exit (no interpreter
# shutdown closes anything for it).
process = multiprocessing.get_context("fork").Process(target=work, args=(sys.argv[1],))
process.start()
process.join()
sys.exit(process.exitcode)
"""


@pytest.mark.parametrize("mode", ["keep", "plain"])
def test_a_run_process_keeps_its_databases_open_and_merges_their_logs_as_it_ends(home, mode):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", KEEP_OPEN_WRITER, mode],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # Kept open, a commit no longer ends with the last connection closing, which merges the
    # log into the database and deletes it (and the next connection starts a new one).
    assert f"WAL between events: {mode == 'keep'}" in done.stdout
    if mode == "keep":
        assert (
            "kept after a child ended: ['index.db', 'run-a.db', 'runs.db', 'schedules.db']"
            in done.stdout
        )
    # Once the process has ended its log is merged either way, as the up-to-date digest wants.
    assert not list((home / "history").rglob("*-wal"))
    (home / "dagster.yaml").write_text("")
    with dg.DagsterInstance.get() as instance:
        messages = [
            r.event_log_entry.user_message for r in instance.get_records_for_run("run-a").records
        ]
    assert [m for m in messages if m.startswith("hello ")] == [
        "hello from run-a",
        *(f"hello {i}" for i in range(5)),
    ]


OPEN_INSTANCE = """
import dagster as dg
with dg.DagsterInstance.get() as instance:
    print(len(instance.get_runs()), flush=True)
"""


def test_a_process_opens_a_new_homes_storage_only_while_no_other_does(home):
    """Two processes creating a new home's databases at once collide (alembic: "more than one
    head"); under the storage lock the second waits, then opens what the first made."""
    import fcntl
    import subprocess
    import sys

    lock = os.open(home / instance_storage.STORAGE_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as if another process were creating the storage
    try:
        opener = subprocess.Popen(
            [sys.executable, "-c", OPEN_INSTANCE], stdout=subprocess.PIPE, text=True
        )
        time.sleep(5)  # ample for it to open the instance (about 2 s with its imports)
        assert opener.poll() is None, "opened the storage while another process held the lock"
        assert not (home / "history" / "runs.db").exists()
    finally:
        os.close(lock)
    out, _ = opener.communicate(timeout=120)
    assert opener.returncode == 0 and out.strip() == "0"
    assert default_storage_ready(home)


def test_a_runs_process_asks_for_a_found_partition_once(home, monkeypatch):
    """Dagster asks whether the run's shard exists for every input and output: a run's process
    (keep_databases_open) remembers the keys it found; other processes, and keys not found or
    deleted since, go to the database."""
    asked = []
    real = instance_storage._DagsterEventLogStorage.has_dynamic_partition

    def counting(self, name, key):
        asked.append(key)
        return real(self, name, key)

    monkeypatch.setattr(instance_storage._DagsterEventLogStorage, "has_dynamic_partition", counting)
    monkeypatch.setattr(instance_storage, "_kept_by_pid", None)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("rawcode", ["rawcode-00000"])
        for _ in range(3):
            assert instance.has_dynamic_partition("rawcode", "rawcode-00000")
        assert len(asked) == 3  # not a run's process: every time
        asked.clear()
        instance_storage.keep_databases_open()
        try:
            for _ in range(3):
                assert instance.has_dynamic_partition("rawcode", "rawcode-00000")
                assert not instance.has_dynamic_partition("rawcode", "rawcode-00001")
            assert asked == ["rawcode-00000"] + ["rawcode-00001"] * 3
            instance.delete_dynamic_partition("rawcode", "rawcode-00000")
            assert not instance.has_dynamic_partition("rawcode", "rawcode-00000")
        finally:
            instance_storage.close_kept_databases()

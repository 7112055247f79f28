"""`codeio build`: land new raw code and run the code location's job for the shards that need it.

Runs are launched the way the UI launches them: a run of `codeio_job` in the code location
`codeio_dagster` (the name `workspace.yaml` gives it), created on the instance in
`$DAGSTER_HOME` and submitted through it, so the configured run coordinator (a queue) and run
launcher (a subprocess, Ray, ...) apply, and the UI can show and re-execute every run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from codeio_dagster.home import (
    dagster_home,
    default_storage_ready,
    default_storage_settings,
    import_storage_modules,
    storage_made_under_lock,
)

LOCATION = "codeio_dagster"  # as in workspace.yaml, so `make dev` serves the runs' location
JOB = "codeio_job"
DEFINITIONS_MODULE = "codeio_dagster.definitions"

# The run's own console shows warnings only: its progress reaches the terminal (and the UI)
# through the event log, which keeps every level.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

_FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class BuildError(Exception):
    """A build that cannot start or finish, said in words that point at the fix."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build",
        help="land new raw code and build the shards that need it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--shard",
        action="append",
        default=[],
        metavar="NAME",
        help="only this shard (repeatable; default: every landed shard); a shard runs only "
        "its stale stages, as the UI marks them",
    )
    parser.set_defaults(func=run)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="the codeio.yaml to use (default: $CODEIO_CONFIG, else ./codeio.yaml)",
    )


def config_path(given: str | None) -> Path:
    from codeio_dagster import CONFIG_ENV, DEFAULT_CONFIG

    return Path(given or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).resolve()


def announce_telemetry(instance, home: Path) -> None:
    """Say in one line, instead of Dagster's banner in the middle of a run, that telemetry is on.

    Dagster prints its banner the first time a process finds no instance id in DAGSTER_HOME; the
    id is created here with the banner swallowed. Whether telemetry is on stays the user's choice.
    """
    import contextlib
    import io

    if not instance.telemetry_enabled or (home / ".telemetry" / "id.yaml").exists():
        return
    from dagster_shared.telemetry import get_or_set_instance_id

    with contextlib.redirect_stderr(io.StringIO()):
        get_or_set_instance_id()
    say(
        "Dagster sends anonymised usage statistics unless you opt out: set "
        f"`telemetry: {{enabled: false}}` in {home / 'dagster.yaml'}"
    )


def run(args: argparse.Namespace) -> int:
    try:
        return build(config_path(args.config), shards=args.shard)
    except BuildError as err:
        print(f"codeio build: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codeio build: interrupted", file=sys.stderr)
        return 130


def stop_run(instance, run_id: str, wait_s: float = 30.0) -> str:
    """Cancel a run this build launched (dequeued or running) and wait for it to end; its status."""
    instance.run_coordinator.cancel_run(run_id)
    deadline = time.monotonic() + wait_s
    while True:
        status = instance.get_run_by_id(run_id).status.value
        if status in _FINISHED or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def say(message: str) -> None:
    print(f"[codeio] {message}", flush=True)


def build(
    path: Path,
    shards: Sequence[str] = (),
    *,
    report: Callable[[Any, dict[str, int], list[str]], None] | None = None,
) -> int:
    """Land, then launch one run of the location's job per shard with stale assets; 0 when all pass.

    `report(config, funnel, shard names)` runs after a build that passed, with the funnel of
    every shard as the stages reported it (`codeio demo` prints it)."""
    from codeio_dagster import CONFIG_ENV
    from codeio_dagster.code_server import CodeServer

    started = time.monotonic()
    # The code location (a code server process, and any run it launches) reads the same file.
    os.environ[CONFIG_ENV] = str(path)
    # Dagster then hands the events it plans for a run at its creation to the storage at once
    # (instance_storage.SqliteEventLogStorage.store_event_batch: one transaction, not 32).
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
    home = dagster_home()
    server = CodeServer(DEFINITIONS_MODULE, LOCATION, path.parent)
    # A home where no build has left every shard up to date has runs ahead: the code server
    # loads (about 3 s) while this process loads the config, lands and asks what is stale.
    # Elsewhere it starts once the build knows that something changed.
    storage_by_server = False
    if path.is_file() and not (home / UP_TO_DATE).exists():
        storage_by_server = start_code_server(server, home)
    try:
        return _build(path, shards, report, home, server, storage_by_server, started)
    finally:
        server.stop()


def start_code_server(server, home: Path) -> bool:
    """Start the code server (if not yet); True when it creates the instance's storage.

    Two processes creating a fresh home's storage at once collide (each stamps the new SQLite
    files' schema version: alembic then finds "more than one head"). The storage a new home's
    dagster.yaml names is opened one process at a time, so there both open it at once. Other
    storage with no files yet (or kept elsewhere, where this process cannot tell) the server
    creates, and this process opens the instance only once the server answers."""
    if server.started:
        return False
    server.start()
    return not default_storage_ready(home) and not storage_made_under_lock(home)


def _build(
    path: Path, shards, report, home: Path, server, storage_by_server: bool, started: float
) -> int:
    from codeio_dagster.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    from codeio_dagster.landing import Landing
    from codeio_dagster.shards import land_new_shards

    say("landing new raw code ...")
    landing = Landing(config.data_dir / "landing")
    new = land_new_shards(config, landing)
    names = sorted(landing.landed().shard_names())
    say(f"{len(new)} new shard(s); {len(names)} in all")
    unknown = sorted(set(shards) - set(names))
    if unknown:
        print(
            f"codeio build: no shard named {', '.join(unknown)}; landed shards: "
            f"{', '.join(names) or 'none'}",
            file=sys.stderr,
        )
        return 2
    wanted = list(dict.fromkeys(shards)) or names
    # Nothing landed, and nothing Dagster stores nor anything a code version hashes changed
    # since a build found every shard up to date: the answer is the same without asking.
    stamp = up_to_date_stamp(home, config, landing, wanted)
    known = read_up_to_date(home, stamp)
    if not new and known is not None:
        say(
            f"done in {time.monotonic() - started:.0f}s; nothing was stale (nothing changed since "
            "a build found every shard up to date)"
        )
        if report is not None:
            report(config, known["funnel"], names)
        return 0

    storage_by_server = start_code_server(server, home) or storage_by_server
    import dagster as dg

    from codeio_dagster.assets import build_assets
    from codeio_dagster.partitions import add_missing_shards
    from codeio_dagster.versions import stale_by_shard

    # Before waiting for the server: what needs no instance takes time the wait would take.
    graph = build_assets(config)
    import_storage_modules(home)
    if storage_by_server:
        code_server_target(server)  # answering, its instance (and storage) exists
    instance = dg.DagsterInstance.get()
    announce_telemetry(instance, home)
    add_missing_shards(instance, names)

    # What the UI would mark stale: missing, or older than the code, config or inputs.
    todo: dict[str, list] = {}
    for shard, stale in stale_by_shard(instance, graph, wanted).items():
        if stale:
            todo[shard] = stale
        else:
            say(f"shard {shard} is up to date: skipped")
    if todo:
        say(f"loading the code location {LOCATION} ...")
        with code_location(instance, server) as (process, context, location, repo):
            every = set(repo.asset_graph.materializable_asset_keys)
            # Only asset steps are announced; a check step is named when it does not pass.
            assets = {k.path[-1] for k in every}
            queue = RunQueue(process)
            for shard, stale in todo.items():
                selection = None if set(stale) >= every else stale
                what = "all stages" if selection is None else f"{len(stale)} stale stage(s)"
                say(
                    f"shard {shard}: launching a run of {JOB} for {what} "
                    f"({time.monotonic() - started:.0f}s)"
                )
                run_id = launch(instance, context, location, repo, shard, selection)
                try:
                    status = follow(instance, run_id, shard, queue=queue, steps=assets)
                except KeyboardInterrupt:
                    status = stop_run(instance, run_id)
                    say(
                        f"shard {shard}: interrupted; run {run_id} stopped ({status}). "
                        "`codeio build` again (or re-executing the run in the UI) goes on "
                        "from what is stale"
                    )
                    return 130
                if status != "SUCCESS":
                    say(
                        f"shard {shard}: run {run_id} ended {status}; open it in the Dagster UI "
                        f"(DAGSTER_HOME={home} make dev), fix the cause and re-execute it there"
                    )
                    return 1
        # A run's process writes one more event after the run's end ("Process for run
        # exited"), and the server reads each finished run once more: the stamp of the storage
        # files below must come after both. The server stops once its runs' processes are gone.
        server.stop()
        say(f"done in {time.monotonic() - started:.0f}s; runs are in DAGSTER_HOME={home}")
        # Asked again (a few queries): a build that leaves every shard fresh is remembered.
        fresh = not any(stale_by_shard(instance, graph, wanted).values())
    else:
        say(f"done in {time.monotonic() - started:.0f}s; nothing was stale")
        fresh = True
    funnel = all_shards_funnel(instance, config, names)
    if fresh and funnel is not None:
        write_up_to_date(home, up_to_date_stamp(home, config, landing, wanted), funnel)
    if report is not None:
        if funnel is None:  # a stage of some shard never reported: say which
            from codeio_dagster.funnel import shard_funnels

            shard_funnels(instance, names, config.revision.turns)
        report(config, funnel, names)
    return 0


def all_shards_funnel(instance, config, names: list[str]) -> dict[str, int] | None:
    """The funnel of every shard added up, or None when a stage of some shard never reported."""
    from codeio_dagster.funnel import MissingReport, add_funnels, shard_funnels

    try:
        return add_funnels(shard_funnels(instance, names, config.revision.turns).values())
    except MissingReport:
        return None


# Written into DAGSTER_HOME by a build that left every shard up to date.
UP_TO_DATE = "codeio-up-to-date.json"


def up_to_date_stamp(home: Path, config, landing, shards: Sequence[str]) -> str | None:
    """A digest of everything that decides whether a build has work: the code versions' inputs
    (the project's source and the validated config), the shards asked for, the landing's index
    files, and the instance's storage files (size and modification time of every file of the
    default SQLite storage in DAGSTER_HOME: any run, materialisation, wipe or new partition
    changes one). None when the instance keeps its storage elsewhere (PostgreSQL, say): then
    only the instance can tell."""
    import hashlib
    import json

    from codeio_dagster.code_digest import source_digest
    from codeio_dagster.storage import list_files

    settings = default_storage_settings(home)
    if settings is None:
        return None
    files = {}
    for folder in ("history", "schedules"):
        for path in sorted((home / folder).rglob("*")):
            if path.is_file():
                st = path.stat()
                files[path.relative_to(home).as_posix()] = (st.st_size, st.st_mtime_ns)
    facts = {
        "source": source_digest(),
        "config": config.model_dump(mode="json"),
        "shards": list(shards),
        "dagster_yaml": settings,
        "landing_index": list_files(landing.index_dir),
        "instance_files": files,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def read_up_to_date(home: Path, stamp: str | None) -> dict | None:
    """What the last build that found every shard up to date saved, if its stamp is `stamp`."""
    import json

    try:
        saved = json.loads((home / UP_TO_DATE).read_text())
    except (OSError, ValueError):
        return None
    if stamp is None or not isinstance(saved, dict) or saved.get("stamp") != stamp:
        return None
    return saved


def write_up_to_date(home: Path, stamp: str | None, funnel: dict[str, int]) -> None:
    import json

    from codeio_dagster.fsutil import atomic_path

    if stamp is None:
        return
    with atomic_path(home / UP_TO_DATE) as tmp:
        tmp.write_text(json.dumps({"stamp": stamp, "funnel": funnel}))


def code_server_target(server):
    """The workspace target of the started server, once it answers; BuildError if it cannot."""
    from codeio_dagster.code_server import CodeServerError

    try:
        return server.target()
    except CodeServerError as err:
        raise BuildError(str(err)) from err


@contextmanager
def code_location(instance, server) -> Iterator[tuple]:
    """The project's code location, served by `server` (a code_server.CodeServer)."""
    from dagster._core.workspace.context import WorkspaceProcessContext

    with WorkspaceProcessContext(
        instance, code_server_target(server), version=""
    ) as process_context:
        context = process_context.create_request_context()
        errors = context.code_location_errors()
        if errors:
            raise BuildError(f"the code location did not load:\n{errors[0].to_string()}")
        location = context.get_code_location(LOCATION)
        (repo,) = location.get_repositories().values()
        yield process_context, context, location, repo


class RunQueue:
    """Dequeues queued runs when the instance queues runs and no Dagster daemon serves the queue.

    The instance's queue (its limits, its run launcher) still decides; this only does what
    `dagster-daemon run` would, while `codeio build` waits, so that a build on a fresh
    DAGSTER_HOME (Dagster queues runs by default) does not wait for a daemon nobody started.
    """

    def __init__(self, process_context):
        self.process_context = process_context
        self.daemon = None

    def daemon_running(self) -> bool:
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
            QueuedRunCoordinatorDaemon,
        )

        kind = QueuedRunCoordinatorDaemon.daemon_type()
        status = self.process_context.instance.get_daemon_statuses([kind]).get(kind)
        return bool(status and status.healthy)

    def serve_once(self) -> None:
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
            QueuedRunCoordinatorDaemon,
        )

        if self.daemon is None:
            self.daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        list(self.daemon.run_iteration(self.process_context))


def launch(instance, context, location, repo, shard: str, selection=None) -> str:
    """Create a run of the location's job for one shard (all its assets, or `selection`) and
    submit it through the instance, as the UI's "Materialize" does."""
    run = create_run(
        instance,
        location,
        repo,
        JOB,
        RUN_CONFIG,
        tags={"dagster/partition": shard, "codeio/launched_by": "codeio"},
        selection=selection,
    )
    instance.submit_run(run.run_id, context)
    return run.run_id


def create_run(instance, location, repo, job_name: str, run_config, tags, selection=None):
    """A run of one of the location's jobs, with its snapshots and origins, as the UI creates it."""
    from dagster._core.definitions.selector import JobSubsetSelector

    remote_job = location.get_job(
        JobSubsetSelector(
            location_name=location.name,
            repository_name=repo.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=selection,
        )
    )
    plan = location.get_execution_plan(
        remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=run_config,
        resolved_op_selection=None,
        step_keys_to_execute=plan.step_keys_to_execute,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=frozenset(selection) if selection is not None else None,
        asset_check_selection=None,
        asset_graph=repo.asset_graph,
    )


def follow(
    instance,
    run_id: str,
    shard: str,
    *,
    queue: RunQueue | None = None,
    steps: set[str] | None = None,
    out: Callable[[str], None] = say,
    poll_s: float = 0.5,
) -> str:
    """Print the run's progress from its event log until it ends; returns its final status.

    The event log is asked again when the files it is kept in change (looked at every 50 ms),
    or after `poll_s` where they are not files here."""
    cursor = None
    hinted = False
    serve = None
    step_started: dict[str, float] = {}
    files = run_storage_files(instance, run_id)
    while True:
        # Before the questions: a write while they are asked shows as a change afterwards.
        seen = _stat_all(files)
        records = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = records.cursor
        for record in records.records:
            line = describe(record.event_log_entry, step_started, steps)
            if line:
                out(f"{shard}: {line}")
        status = instance.get_run_by_id(run_id).status.value
        if status in _FINISHED and not records.has_more:
            return status
        if status == "QUEUED" and queue is not None:
            if serve is None:
                serve = not queue.daemon_running()
                out(
                    f"queued (run {run_id}); "
                    + (
                        "no Dagster daemon is running, so this command dequeues it (the "
                        "instance's queue limits and run launcher apply)"
                        if serve
                        else "the Dagster daemon will start it"
                    )
                )
            if serve:
                queue.serve_once()
        elif status == "QUEUED" and not hinted:
            out(f"queued (run {run_id}); the Dagster daemon (`dagster-daemon run`) starts it")
            hinted = True
        if not records.has_more:
            _wait_for_change(files, seen, poll_s)


def run_storage_files(instance, run_id: str) -> list[str]:
    """The files a write about the run changes (its event database, the runs table), when the
    instance keeps them in Dagster's SQLite files; empty where it keeps them elsewhere."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from sqlalchemy.engine import make_url

    events, runs = instance.event_log_storage, instance.run_storage
    if not isinstance(events, SqliteEventLogStorage) or not isinstance(runs, SqliteRunStorage):
        return []
    paths = [events.path_for_shard(run_id), make_url(runs._conn_string).database]
    # In WAL mode a commit appends to the -wal file; a checkpoint rewrites the database.
    return [f"{path}{suffix}" for path in paths if path for suffix in ("", "-wal")]


def _stat_all(paths: list[str]) -> list[tuple[int, int] | None]:
    seen = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            seen.append(None)
        else:
            seen.append((st.st_size, st.st_mtime_ns))
    return seen


def _wait_for_change(paths: list[str], seen: list, at_most_s: float, every_s: float = 0.05):
    """Sleep until one of `paths` changed since `seen` was taken, or `at_most_s` passed."""
    deadline = time.monotonic() + at_most_s
    while paths and time.monotonic() + every_s < deadline:
        time.sleep(every_s)
        if _stat_all(paths) != seen:
            return
    time.sleep(max(0.0, deadline - time.monotonic()))


def describe(entry, step_started: dict[str, float], steps: set[str] | None = None) -> str | None:
    """One progress line for an event-log entry, or None for what a terminal need not show.

    Starts and ends are shown for the steps in `steps` (all when None); failures for every step.
    """
    from dagster import DagsterEventType

    event = entry.dagster_event
    if event is None:
        # A message the project logged (context.log or a managed Python logger).
        return f"  {entry.user_message}" if entry.level >= 20 else None
    kind = event.event_type
    step = event.step_key
    quiet = steps is not None and step not in steps
    if quiet and kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
        return None
    if kind == DagsterEventType.STEP_START:
        step_started[step] = entry.timestamp
        return f"{step} ..."
    if kind == DagsterEventType.STEP_SUCCESS:
        took = entry.timestamp - step_started.get(step, entry.timestamp)
        return f"{step} done ({took:.0f}s)"
    if kind == DagsterEventType.STEP_FAILURE:
        error = event.step_failure_data.error
        return f"{step} FAILED: {error.message.strip() if error else event.message}"
    if kind == DagsterEventType.ASSET_CHECK_EVALUATION:
        data = event.event_specific_data
        if not data.passed:
            return f"check {data.check_name} on {data.asset_key.to_user_string()} did not pass"
        return None
    if kind in (DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED):
        return event.message
    if kind == DagsterEventType.ENGINE_EVENT and event.message.startswith("Started process"):
        return "run process started"
    return None

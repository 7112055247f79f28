"""The code server `codeio build` starts early: it serves the location, and it never outlives
the build, whether the build stops it, never used it, or is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from codeio_dagster.build import DEFINITIONS_MODULE, JOB, LOCATION
from codeio_dagster.code_server import CodeServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project_env(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME and the shipped config, as `codeio build` sets them."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CODEIO_CONFIG", str(ROOT / "codeio.yaml"))
    return home


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie of ours counts as gone: reap it if it is our child.
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.2)
    return False


def test_serves_the_location_job_and_stops_with_nothing_left(project_env):
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext

    server = CodeServer(DEFINITIONS_MODULE, LOCATION, ROOT).start()
    pid = server._process.pid
    socket_dir = Path(server.socket).parent
    try:
        with (
            dg.DagsterInstance.get() as instance,
            WorkspaceProcessContext(instance, server.target(), version="") as process,
        ):
            context = process.create_request_context()
            assert not context.code_location_errors()
            location = context.get_code_location(LOCATION)
            (repo,) = location.get_repositories().values()
            assert JOB in {job.name for job in repo.get_all_jobs()}
    finally:
        server.stop()
    assert _gone(pid, 5), "the code server still runs after stop()"
    assert not socket_dir.exists()


def test_a_server_never_used_is_stopped_at_once(project_env):
    server = CodeServer(DEFINITIONS_MODULE, LOCATION, ROOT).start()
    process = server._process
    server.stop()
    assert _gone(process.pid, 5)
    # Ended by a signal (SIGTERM, or SIGKILL if that was not heeded), not asked to shut down
    # once its runs finish, as a server the build used is.
    assert process.returncode in (-signal.SIGTERM, -signal.SIGKILL)


def test_a_server_connected_to_after_its_heartbeat_timeout_still_serves(project_env):
    """The build may land raw code for longer than the heartbeat timeout before it connects."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext

    with CodeServer(DEFINITIONS_MODULE, LOCATION, ROOT, heartbeat_timeout_s=2) as server:
        time.sleep(8)  # four timeouts with no connection: only the beats keep it up
        assert server._process.poll() is None, "the server shut down before the build connected"
        with (
            dg.DagsterInstance.get() as instance,
            WorkspaceProcessContext(instance, server.target(), version="") as process,
        ):
            assert not process.create_request_context().code_location_errors()


def test_a_broken_definitions_module_is_reported_not_hung(project_env, tmp_path):
    (tmp_path / "broken_defs.py").write_text("raise RuntimeError('no definitions here')\n")
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext

    with (
        CodeServer("broken_defs", LOCATION, tmp_path) as server,
        dg.DagsterInstance.get() as instance,
        WorkspaceProcessContext(instance, server.target(), version="") as process,
    ):
        errors = process.create_request_context().code_location_errors()
    assert errors and "no definitions here" in errors[0].to_string()


def test_a_killed_owner_leaves_no_server_behind(project_env, tmp_path):
    """The server hears no heartbeat once its owner is gone, and shuts down by itself."""
    owner = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from codeio_dagster.code_server import CodeServer
        server = CodeServer({DEFINITIONS_MODULE!r}, {LOCATION!r}, Path({str(ROOT)!r}),
                            heartbeat_timeout_s=3)
        server.target()
        print("PID", server._process.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    # The orphan inherits the owner's output: a file, so nothing waits for the pipe to close.
    log = tmp_path / "owner.log"
    with open(log, "w") as out:
        code = subprocess.run(
            [sys.executable, "-c", owner], stdout=out, stderr=subprocess.STDOUT, timeout=180
        ).returncode
    text = log.read_text()
    assert code == -9, text
    pid = int(text.split("PID ", 1)[1].split()[0])
    assert not _gone(pid, 0.5), "the server should outlive its owner until its heartbeat timeout"
    assert _gone(pid, 30), "the orphaned code server did not shut down after its heartbeat timeout"


def test_a_build_may_import_dagster_while_the_heartbeat_starts(project_env):
    """The build starts the server first thing and imports Dagster later, while the heartbeat
    thread is running: the two imports must not meet halfway (Dagster's circular imports make
    two threads importing it at once fail)."""
    owner = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        assert "dagster" not in sys.modules
        from codeio_dagster.code_server import CodeServer
        server = CodeServer({DEFINITIONS_MODULE!r}, {LOCATION!r}, Path({str(ROOT)!r})).start()
        try:
            from dagster._core.errors import DagsterUserCodeUnreachableError  # noqa: F401
            import dagster
            server.target()
            print("ANSWERED", flush=True)
        finally:
            server.stop()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", owner], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0 and "ANSWERED" in done.stdout, done.stderr[-3000:]
    assert "Exception in thread" not in done.stderr, done.stderr[-3000:]


def test_on_a_fresh_home_the_build_and_the_server_open_the_storage_at_once(tmp_path, monkeypatch):
    """Two processes creating a fresh SQLite storage at once collide (alembic: "more than one
    head"); the storage a new home's dagster.yaml names is opened one process at a time, so the
    build opens the instance while the server loads, instead of waiting for it to answer."""
    import dagster as dg

    from codeio_dagster.build import code_server_target, start_code_server
    from codeio_dagster.home import dagster_home, default_storage_ready

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CODEIO_CONFIG", str(ROOT / "codeio.yaml"))
    home = dagster_home()
    server = CodeServer(DEFINITIONS_MODULE, LOCATION, ROOT)
    try:
        assert start_code_server(server, home) is False
        with dg.DagsterInstance.get() as instance:
            assert default_storage_ready(home)
            assert instance.get_runs() == []
            # The server opened the same new storage meanwhile, or opens it now: it answers.
            code_server_target(server)
            assert instance.get_runs() == []
    finally:
        server.stop()


def test_on_a_fresh_home_with_dagsters_storage_the_server_creates_it_first(tmp_path, monkeypatch):
    """Dagster's own classes take no lock: there the server creates the storage, and the build
    opens the instance once the server answers."""
    from codeio_dagster.build import start_code_server
    from codeio_dagster.home import dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = dagster_home()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    started = []
    stand_in = SimpleNamespace(started=False, start=lambda: started.append(True))
    assert start_code_server(stand_in, home) is True and started == [True]


def test_storage_kept_elsewhere_is_left_to_the_server_first(tmp_path, monkeypatch):
    import dagster as dg

    from codeio_dagster.build import start_code_server
    from codeio_dagster.home import dagster_home, default_storage_ready

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = dagster_home()
    dg.DagsterInstance.get().dispose()
    assert default_storage_ready(home)
    # The home's own files exist, but the instance now keeps its storage elsewhere, which
    # this process cannot see from files: the server goes first there too.
    (home / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {tmp_path / 'elsewhere'}\n"
    )
    assert not default_storage_ready(home)
    started = []
    stand_in = SimpleNamespace(started=False, start=lambda: started.append(True))
    assert start_code_server(stand_in, home) is True and started == [True]

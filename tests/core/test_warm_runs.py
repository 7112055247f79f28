"""The runs that `codeio build`'s code server launches start warm, forked from a process that has
imported Dagster and the definitions already, and see what a spawned run would see."""

from __future__ import annotations

import json
import os
import re
import textwrap
import time
from pathlib import Path

import pytest

from codeio_dagster.code_server import CodeServer
from tests.core.test_code_server import _gone

PROBE_DEFS = textwrap.dedent(
    """
    import json, os
    import dagster as dg

    IMPORTED_BY = os.getpid()

    @dg.op
    def probe():
        with open(f"/proc/{os.getppid()}/stat") as f:
            grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(os.environ["PROBE_OUT"], "w") as out:
            json.dump({"pid": os.getpid(), "parent": os.getppid(), "grandparent": grandparent,
                       "imported_by": IMPORTED_BY, "dotenv": os.environ.get("PROBE_FROM_DOTENV"),
                       "cwd": os.getcwd()}, out)

    # In the run's own process, whose parent is then the process it was started from.
    @dg.job(executor_def=dg.in_process_executor)
    def probe_job():
        probe()

    defs = dg.Definitions(jobs=[probe_job])
    """
)


def _launch(instance, server, location_name: str) -> str:
    from dagster._core.workspace.context import WorkspaceProcessContext

    from codeio_dagster.build import create_run

    with WorkspaceProcessContext(instance, server.target(), version="") as process:
        context = process.create_request_context()
        assert not context.code_location_errors()
        location = context.get_code_location(location_name)
        (repo,) = location.get_repositories().values()
        run = create_run(instance, location, repo, "probe_job", {}, tags={})
        instance.launch_run(run.run_id, context)
        return run.run_id


def _compiled_packages(pid: int) -> set[str]:
    """The installed packages whose compiled modules process `pid` has loaded."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {
        line.split("site-packages/", 1)[1].split("/", 1)[0]
        for line in maps.splitlines()
        if "site-packages/" in line and ".so" in line
    }


def _wait_finished(instance, run_id: str, within_s: float = 120):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            return run
        time.sleep(0.2)
    pytest.fail(f"run {run_id} did not finish within {within_s} s")


def test_a_run_forks_from_the_warm_server_with_the_servers_environment(
    tmp_path, monkeypatch, capfd
):
    import dagster as dg

    project = tmp_path / "project"
    project.mkdir()
    (project / "probe_defs.py").write_text(PROBE_DEFS)
    # Dagster's per-project .env loader: the server reads it into its environment when it starts
    # (`--inject-env-vars-from-instance`), after the fork server has started; a run still sees it.
    (project / ".env").write_text("PROBE_FROM_DOTENV=from the project's .env\n")
    monkeypatch.setenv("DAGSTER_PROJECT_ENV_FILE_PATHS", json.dumps({"probe": "."}))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = tmp_path / "probe.json"
    monkeypatch.setenv("PROBE_OUT", str(out))

    with CodeServer("probe_defs", "probe", project) as server, dg.DagsterInstance.get() as instance:
        run = _wait_finished(instance, _launch(instance, server, "probe"))
        server_pid = server._process.pid
        assert run.status == dg.DagsterRunStatus.SUCCESS
        seen = json.loads(out.read_text())
        # What only runs need (the openai client's HTTP stack, with compiled modules of its own)
        # was imported by the fork server, not by the code server before it could answer.
        loaded = {pid: _compiled_packages(pid) for pid in (server_pid, seen["parent"])}
    for run_only in ("aiohttp", "numpy"):
        assert run_only in loaded[seen["parent"]] and run_only not in loaded[server_pid]
    # What both need (the storage's SQLAlchemy) the code server imported before the fork.
    assert "sqlalchemy" in loaded[server_pid]
    # Forked from the fork server, a child of the code server made before its gRPC threads...
    assert seen["grandparent"] == server_pid
    assert seen["parent"] not in (server_pid, seen["pid"])
    # ...once the code server had imported the definitions: the run did not import them again.
    assert seen["imported_by"] == server_pid
    assert seen["dotenv"] == "from the project's .env"
    assert seen["cwd"] == str(project)
    assert _gone(seen["parent"], 10), "the fork server outlived its code server"
    # Nothing extra on the terminal: no warning about forking or a main module run again.
    err = capfd.readouterr().err
    assert "RuntimeWarning" not in err and "DeprecationWarning" not in err


def test_without_a_forked_fork_server_runs_still_fork_from_a_preloaded_one(tmp_path):
    """If the fork server cannot be forked from the code server, multiprocessing starts its own
    (a new interpreter importing the same modules), and runs fork from that."""
    import subprocess
    import sys

    (tmp_path / "probe_target.py").write_text(
        "import os\n"
        "def record(path):\n"
        "    with open(f'/proc/{os.getppid()}/cmdline', 'rb') as f:\n"
        "        parent = f.read().replace(b'\\0', b' ').decode()\n"
        "    with open(path, 'w') as out:\n"
        "        out.write(os.environ['PROBE_SEEN'] + '\\n' + parent)\n"
    )
    out = tmp_path / "seen.txt"
    script = textwrap.dedent(
        f"""
        import os
        from codeio_dagster import warm_runs
        import probe_target

        def refuse():
            raise OSError("no fork here")

        warm_runs._fork_the_fork_server = refuse
        warm_runs.install("")
        os.environ["PROBE_SEEN"] = "set after the fork server started"
        process = warm_runs._WarmContext().Process(target=probe_target.record, args=({str(out)!r},))
        process.start()
        process.join(120)
        print(process.exitcode)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.split()[-1] == "0", done.stderr
    seen, parent = out.read_text().split("\n", 1)
    assert seen == "set after the fork server started"
    assert "multiprocessing.forkserver" in parent


def test_the_fork_server_preloads_without_starting_polars_thread_pool():
    """A process forked after polars has started its compute threads hangs the first time it
    uses polars; importing polars starts none, and nothing preloaded (nor the Definitions'
    build that warms the caches) may start them."""
    import subprocess
    import sys

    from codeio_dagster.warm_runs import _PRELOAD, DEFINITIONS_ENV

    probe = textwrap.dedent(
        f"""
        import os
        import sys
        for name in {list(_PRELOAD)!r}:
            __import__(name)
        print(sys.modules["codeio_dagster._warm_preload"].built)
        print(sorted(open(f"/proc/self/task/{{t}}/comm").read().strip()
                     for t in os.listdir("/proc/self/task")))
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        DEFINITIONS_ENV: "codeio_dagster.definitions",
        "CODEIO_CONFIG": str(root / "codeio.yaml"),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    built, listed = done.stdout.strip().splitlines()[-2:]
    # The Definitions were built too (_warm_preload), not only imported.
    assert built == "True", done.stderr
    threads = eval(listed)  # noqa: S307 - our own printed list
    # Its compute threads are polars-0, polars-1, ... (the cleaner polars-ooc-clea is started
    # at import and harmless: a forked child does not need it).
    assert not [t for t in threads if re.fullmatch(r"polars-\d+|tokio-rt-worker", t)], threads

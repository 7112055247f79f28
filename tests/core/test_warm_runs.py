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

PROBE_DEFS = textwrap.dedent(
    """
    import json, os
    import dagster as dg

    IMPORTED_BY = os.getpid()

    @dg.op
    def probe():
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read().replace(b"\\0", b" ").decode()
        with open(os.environ["PROBE_OUT"], "w") as out:
            json.dump({"pid": os.getpid(), "imported_by": IMPORTED_BY, "parent": parent,
                       "dotenv": os.environ.get("PROBE_FROM_DOTENV"), "cwd": os.getcwd()}, out)

    # In the run's own process, whose parent is then the process it was started from.
    @dg.job(executor_def=dg.in_process_executor)
    def probe_job():
        probe()

    defs = dg.Definitions(jobs=[probe_job])
    """
)


def _launch(instance, server, location_name: str) -> str:
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.workspace.context import WorkspaceProcessContext

    with WorkspaceProcessContext(instance, server.target(), version="") as process:
        context = process.create_request_context()
        assert not context.code_location_errors()
        location = context.get_code_location(location_name)
        (repo,) = location.get_repositories().values()
        remote_job = location.get_job(
            JobSubsetSelector(
                location_name=location_name,
                repository_name=repo.name,
                job_name="probe_job",
                op_selection=None,
            )
        )
        plan = location.get_execution_plan(
            remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        run = instance.create_run(
            job_name="probe_job",
            run_id=None,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        instance.launch_run(run.run_id, context)
        return run.run_id


def _children(pid: int, marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if int(stat[1]) == pid and marker in cmdline.decode(errors="replace"):
                found.append(int(entry))
    return found


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


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
        fork_servers = _children(server_pid, "multiprocessing.forkserver")
    # Nothing extra on the terminal: a main module run again in the child would warn there.
    assert "RuntimeWarning" not in capfd.readouterr().err
    assert len(fork_servers) == 1
    assert _gone(fork_servers[0], 10), "the fork server outlived its code server"
    assert run.status == dg.DagsterRunStatus.SUCCESS
    seen = json.loads(out.read_text())
    # Forked from multiprocessing's fork server, not spawned by the gRPC server itself...
    assert "multiprocessing.forkserver" in seen["parent"]
    # ...which had imported the definitions before the run's process existed.
    assert seen["imported_by"] != seen["pid"]
    assert seen["dotenv"] == "from the project's .env"
    assert seen["cwd"] == str(project)
    assert server_pid != seen["pid"]


def test_definitions_that_fail_in_the_fork_server_fail_the_run_not_the_server(
    tmp_path, monkeypatch
):
    """The fork server ignores the error; the run imports the module again, and Dagster reports
    the error as the run's failure. The server goes on serving."""
    import dagster as dg

    project = tmp_path / "project"
    project.mkdir()
    # Fails in the fork server and in the runs forked from it (their command line is its own),
    # loads in the gRPC server.
    (project / "probe_defs.py").write_text(
        "from pathlib import Path\n"
        "if b'multiprocessing.forkserver' in Path('/proc/self/cmdline').read_bytes():\n"
        "    raise RuntimeError('no definitions in a fork server')\n" + PROBE_DEFS
    )
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("PROBE_OUT", str(tmp_path / "probe.json"))
    with CodeServer("probe_defs", "probe", project) as server, dg.DagsterInstance.get() as instance:
        for _ in range(2):
            run = _wait_finished(instance, _launch(instance, server, "probe"))
            assert run.status == dg.DagsterRunStatus.FAILURE
            failure = "\n".join(
                str(record.event_log_entry.dagster_event.event_specific_data)
                for record in instance.get_records_for_run(run.run_id).records
                if record.event_log_entry.dagster_event is not None
            )
            assert "no definitions in a fork server" in failure
        assert server._process.poll() is None
    assert not (tmp_path / "probe.json").exists()


def test_the_fork_server_preloads_without_starting_polars_thread_pool():
    """A process forked after polars has started its compute threads hangs the first time it
    uses polars; importing polars starts none, and nothing preloaded may start them."""
    import subprocess
    import sys

    from codeio_dagster.warm_runs import _PRELOAD, DEFINITIONS_ENV

    probe = textwrap.dedent(
        f"""
        import os
        for name in {list(_PRELOAD)!r}:
            __import__(name)
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
    threads = eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    # Its compute threads are polars-0, polars-1, ... (the cleaner polars-ooc-clea is started
    # at import and harmless: a forked child does not need it).
    assert not [t for t in threads if re.fullmatch(r"polars-\d+|tokio-rt-worker", t)], threads

"""`codeio build` follows a run through its event log, and notices a write as it lands."""

from __future__ import annotations

import threading
import time

import dagster as dg
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from codeio_dagster.build import follow, run_storage_files
from codeio_dagster.home import dagster_home


def test_follow_wakes_when_the_run_writes_not_at_its_poll_interval(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    dagster_home()  # this project's dagster.yaml: Dagster's SQLite files
    with dg.DagsterInstance.get() as instance:
        run = DagsterRun(job_name="codeio_job", run_id="run-a", status=DagsterRunStatus.STARTED)
        instance.add_run(run)
        instance.report_engine_event("started", run)
        assert any(path.endswith("run-a.db") for path in run_storage_files(instance, "run-a"))

        def finish():
            time.sleep(1)
            instance.report_dagster_event(
                DagsterEvent(
                    event_type_value=DagsterEventType.RUN_SUCCESS.value,
                    job_name="codeio_job",
                    message="finished",
                ),
                run_id="run-a",
            )

        writer = threading.Thread(target=finish)
        writer.start()
        started = time.monotonic()
        status = follow(instance, "run-a", "s0", out=lambda line: None, poll_s=60)
        took = time.monotonic() - started
        writer.join()
    assert status == "SUCCESS"
    # Asked again once the files changed, not after the 60 s a poll waits for nothing.
    assert took < 30, took


def test_a_run_kept_outside_sqlite_files_is_polled():
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_run(DagsterRun(job_name="codeio_job", run_id="run-a"))
        assert run_storage_files(instance, "run-a") == []

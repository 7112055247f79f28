"""A jail that dies or hangs: its running job is reported, the others are rerun, it restarts."""

from __future__ import annotations

from pathlib import Path

from codeio_dagster.sandbox import Executor
from tests.sandbox.workers import job, kill_light_worker_soon


def test_dead_worker_is_replaced_and_its_job_reported(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 1})
    with Executor(settings) as ex:
        worker = kill_light_worker_soon(ex, settings)
        (victim,) = ex.run([job("victim", "    import time\n    time.sleep(10)")])
        (after,) = ex.run([job("after", "    return 'fine'")])
    assert victim.status == "killed" and "died" in victim.error
    assert after.status == "ok" and after.output == '"fine"'
    assert worker.starts == 2
    # The killed nsjail could not remove its cgroups; closing the executor sweeps them.
    for controller in ("memory", "pids"):
        parent = Path("/sys/fs/cgroup") / controller / "NSJAIL"
        leftovers = [
            p.name for p in parent.glob("NSJAIL.*") if not Path(f"/proc/{p.name[7:]}").exists()
        ]
        assert leftovers == []


def test_jobs_queued_behind_a_dying_worker_are_rerun(sandbox_settings):
    # Requests are written ahead to a jail; when it dies only the running one may be lost.
    settings = sandbox_settings.model_copy(update={"workers": 1})
    with Executor(settings) as ex:
        worker = kill_light_worker_soon(ex, settings)
        jobs = [job("victim", "    import time\n    time.sleep(10)")]
        jobs += [job(f"after{i}", f"    return {i}") for i in range(6)]
        results = ex.run(jobs)
    assert results[0].status == "killed" and "died" in results[0].error
    assert [r.output for r in results[1:]] == [str(i) for i in range(6)]
    assert worker.starts == 2

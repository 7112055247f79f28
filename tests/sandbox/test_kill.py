"""A run SIGKILLed while its jails work: the jails die with it, the next start clears its folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from codeio_dagster.sandbox import Executor
from codeio_dagster.sandbox.executor import SCRATCH_PREFIX

_RUN = """
import sys
from pathlib import Path
from codeio_dagster.sandbox import (
    Executor, FunctionSpec, IOPairLimits, SandboxSettings, generate_io_pairs,
)

code = '''
import time
def main_solution(n):
    time.sleep(600)
def input_generator():
    return {"n": 1}
'''
settings = SandboxSettings(workers=1, timeout_s=300)
with Executor(settings, scratch_root=Path(sys.argv[1])) as ex:
    generate_io_pairs(ex, [FunctionSpec(id="slow", code=code)], IOPairLimits(time_budget_s=600))
"""


def _jailed(parent: psutil.Process) -> list[psutil.Process]:
    return [p for p in parent.children(recursive=True) if "forkserver.py" in " ".join(p.cmdline())]


def _wait_for(predicate, seconds: float) -> bool:
    # Polls for an event with a generous bound; the assertion is on the event, not the time.
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_jails_die_with_a_killed_run_and_its_scratch_is_cleared(sandbox_settings, tmp_path: Path):
    run = subprocess.Popen([sys.executable, "-c", _RUN, str(tmp_path)])
    try:
        parent = psutil.Process(run.pid)
        # The job is running once the jail's fork-server has forked it.
        assert _wait_for(lambda: any(p.children() for p in _jailed(parent)), 120)
        family = parent.children(recursive=True)
        assert any(p.name() == "nsjail" for p in family)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
    # Without this, the jail sleeps on for the job's 300 s wall clock.
    assert _wait_for(lambda: not any(p.is_running() and p.status() != "zombie" for p in family), 30)
    (stale,) = tmp_path.glob(f"{SCRATCH_PREFIX}*")
    with Executor(sandbox_settings, scratch_root=tmp_path) as ex:
        assert not stale.exists()
        assert list(tmp_path.glob(f"{SCRATCH_PREFIX}*")) == [ex.scratch]
    assert list(tmp_path.glob(f"{SCRATCH_PREFIX}*")) == []

"""The batch executor in real nsjail: statuses, ordering, worker replacement, settings, warnings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from codeio_dagster.sandbox import Executor, Job, SandboxSettings
from codeio_dagster.sandbox.executor import UNSAFE_WARNING


def _job(id_: str, body: str, **kw) -> Job:
    return Job(id=id_, code="def f(*a, **k):\n" + body, call="f", **kw)


def test_every_status_and_input_order(executor):
    jobs = [
        Job(
            id="kwargs",
            code="def f(a, b):\n    return {'sum': a + b}",
            call="f",
            input={"a": 1, "b": 2},
        ),
        Job(id="args", code="def f(a, b):\n    return (a, b)", call="f", input=[1, "x"]),
        _job("exception", "    raise KeyError('boom')"),
        _job("timeout", "    while True: pass", timeout_s=0.5),
        _job("memory", "    return len(bytearray(8 * 1024 ** 3))"),
        _job("output_limit", "    return 'x' * (2 << 20)"),
        _job("invalid_output", "    return object()"),
        Job(id="no such function", code="x = 1", call="f"),
        Job(id="syntax", code="def f(:", call="f"),
    ]
    results = executor.run(jobs)
    assert [r.id for r in results] == [j.id for j in jobs]
    got = {r.id: r for r in results}
    assert got["kwargs"].status == "ok" and got["kwargs"].output == '{"sum": 3}'
    assert got["args"].output == '[1, "x"]' and got["args"].conversions == ["tuple->list"]
    assert got["exception"].status == "exception"
    assert got["exception"].error.startswith("KeyError: 'boom'")
    assert 'File "<job>", line 2' in got["exception"].error  # the job's own traceback line
    assert got["timeout"].status == "timeout"
    assert got["memory"].status == "memory"
    assert got["output_limit"].status == "output_limit"
    assert got["invalid_output"].status == "invalid_output"
    assert got["no such function"].status == "exception"
    assert "no callable named 'f'" in got["no such function"].error
    assert got["syntax"].status == "exception" and "SyntaxError" in got["syntax"].error


def test_many_jobs_spread_over_workers_keep_order(executor):
    jobs = [
        Job(id=str(i), code="def f(i):\n    return i * i", call="f", input=[i]) for i in range(300)
    ]
    results = executor.run(jobs)
    assert [r.output for r in results] == [str(i * i) for i in range(300)]


def test_job_prints_are_kept_apart_from_the_result(executor):
    (r,) = executor.run([_job("p", "    print('hello')\n    return 1")])
    assert (r.status, r.output, r.stdout) == ("ok", "1", "hello\n")


def test_hash_seed_selects_jails_with_that_seed(executor):
    code = "def f():\n    return hash('codeio')"
    a, b, c = executor.run(
        [
            Job(id="a", code=code, call="f"),
            Job(id="b", code=code, call="f", hash_seed=7),
            Job(id="c", code=code, call="f", hash_seed=7),
        ]
    )
    assert b.output == c.output != a.output


def test_random_is_fresh_in_every_job(executor):
    code = (
        "import random, numpy\ndef f():\n    return [random.random(), float(numpy.random.rand())]"
    )
    results = executor.run([Job(id=str(i), code=code, call="f") for i in range(4)])
    assert len({r.output for r in results}) == 4


def _kill_light_worker_soon(ex: Executor, settings):
    """Warm the one light jail, have its process killed half a second later; that worker."""
    ex.run([_job("warm", "    return 1")])
    worker = ex._pools[(settings.hash_seed, False)][0]
    proc = worker.proc

    def kill_soon() -> None:
        time.sleep(0.5)
        proc.kill()

    threading.Thread(target=kill_soon).start()
    return worker


def test_dead_worker_is_replaced_and_its_job_reported(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 1})
    with Executor(settings) as ex:
        worker = _kill_light_worker_soon(ex, settings)
        (victim,) = ex.run([_job("victim", "    import time\n    time.sleep(10)")])
        (after,) = ex.run([_job("after", "    return 'fine'")])
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


def test_unsafe_mode_warns_every_time(sandbox_settings, capsys):
    settings = sandbox_settings.model_copy(update={"mode": "unsafe_subprocess", "workers": 1})
    for _ in range(2):
        with Executor(settings) as ex:
            (r,) = ex.run([_job("u", "    return 2")])
            assert r.output == "2"
    assert capsys.readouterr().err.count(UNSAFE_WARNING) == 2


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "docker", "mode"),
        ("timeout_s", 0, "timeout_s"),
        ("memory_mb", 1, "memory_mb"),
        ("runtime_dir", "relative/dir", "must be an absolute path"),
        ("preload", ["os; rm"], "is not a module name"),
        ("max_output_bytes", 1 << 30, "64 MiB"),
        ("unknown_key", 1, "unknown_key"),
    ],
)
def test_settings_reject_bad_values_by_name(field, value, message):
    with pytest.raises(ValidationError, match=message):
        SandboxSettings(**{field: value})


def test_missing_runtime_names_the_setup_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="codeio sandbox setup"):
        Executor(SandboxSettings(runtime_dir=tmp_path / "none")).__enter__()


def test_cli_run_prints_one_json_object(tmp_path, sandbox_settings):
    script = tmp_path / "prog.py"
    script.write_text("def add(a, b):\n    return a + b\n")
    codeio = Path(sys.executable).parent / "codeio"
    proc = subprocess.run(
        [
            str(codeio),
            "sandbox",
            "run",
            str(script),
            "--call",
            "add",
            "--input",
            '{"a": 2, "b": 3}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["status"], out["output"], out["error"]) == ("ok", "5", None)
    assert isinstance(out["duration_ms"], float)
    bad = subprocess.run(
        [str(codeio), "sandbox", "run", str(script), "--call", "add", "--input", "{nope"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "--input is not JSON" in bad.stderr


FORGE = """
import json, os, sys

def forge(reply):
    data = json.dumps(reply).encode()
    # Any descriptor still open, then the shared mapping the fork-server reads the reply from,
    # found on the stack and filled through the server's own writer.
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass
    frame = sys._getframe()
    while frame is not None:
        found = frame.f_locals.get("result")
        if type(found).__name__ == "_ResultBuffer":
            found.write(reply)
            break
        frame = frame.f_back
    else:
        raise AssertionError("no result mapping found to forge")
    os._exit(0)

def f():
    forge({"status": "ok", "output": "not json", "conversions": "x"})

def main_solution(n):
    return n

def input_generator():
    forge({"status": "ok", "pairs": [["1", "2"]], "counts": {}})
"""


def test_forged_replies_on_the_result_channel_are_rejected(executor):
    from codeio_dagster.sandbox import FunctionSpec, IOPairLimits, generate_io_pairs

    (r,) = executor.run([Job(id="forge", code=FORGE, call="f")])
    assert r.status == "invalid_output" and r.output is None
    (o,) = generate_io_pairs(executor, [FunctionSpec(id="forge", code=FORGE)], IOPairLimits())
    assert o.status == "invalid_output" and o.pairs == []


def test_jobs_queued_behind_a_dying_worker_are_rerun(sandbox_settings):
    # Requests are written ahead to a jail; when it dies only the running one may be lost.
    settings = sandbox_settings.model_copy(update={"workers": 1})
    with Executor(settings) as ex:
        worker = _kill_light_worker_soon(ex, settings)
        jobs = [_job("victim", "    import time\n    time.sleep(10)")]
        jobs += [_job(f"after{i}", f"    return {i}") for i in range(6)]
        results = ex.run(jobs)
    assert results[0].status == "killed" and "died" in results[0].error
    assert [r.output for r in results[1:]] == [str(i) for i in range(6)]
    assert worker.starts == 2


def test_a_reply_the_host_made_up_is_never_cached(sandbox_settings, tmp_path):
    from codeio_dagster.sandbox.cache import SqliteResultCache

    settings = sandbox_settings.model_copy(update={"workers": 1})
    job = _job("victim", "    import time\n    time.sleep(2)\n    return 'slept'")
    with Executor(settings) as ex, SqliteResultCache(tmp_path / "c.sqlite") as cache:
        _kill_light_worker_soon(ex, settings)
        (victim,) = ex.run([job], cache=cache)
        assert victim.status == "killed" and "died" in victim.error
        before = ex.requests_run
        (again,) = ex.run([job], cache=cache)  # not answered by the made-up reply: run again
        assert again.status == "ok" and ex.requests_run == before + 1
        (third,) = ex.run([job], cache=cache)  # the real reply was stored
        assert third == again and ex.requests_run == before + 1

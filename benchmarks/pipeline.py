"""Cost of the pipeline's own work per raw file: 200-file shards through the whole graph.

The LLM is an instant OpenAI-compatible server (real HTTP, the chat-completions protocol) that
replays the CodeI/O authors' own results for their 1,000-file sample
(`../shared/fixtures/codeio_rawcode_1k_parsed.jsonl`), so every second measured is the
pipeline's, not a model's:

- a refactor request for a raw file the authors kept gets a four-section reply: their reference
  code, I/O description and problem statement, and an input generator (theirs were not kept)
  that draws from their stored inputs at random; a file they dropped gets a reply without the
  sections (dropped as `missing_section`, as a model's unusable reply would be);
- an output (input) prediction is answered with their stored output (an input giving the asked
  output): wrongly at turn 0 for about half the prompts (chosen by a hash of the prompt, so
  reruns ask the same), rightly after feedback, so verdicts and the revision turn have work.

`codeio demo` runs as its own process twice on each shard asked for (`--shards`, default 0; a
fresh project per shard; real nsjail, every limit as configured: one output- and one
input-prediction task per function, one revision turn); the second run is the unchanged rerun.
Printed per shard and run: seconds per Dagster step (from the run's step stats), the whole
process split into phases by its output lines (start, landing and stale check, code location,
run submitted, dequeued, run process start, steps, funnel), seconds per raw file and the LLM
requests sent, and the CPU time (user + sys) of the process and every process it started (a
server, the run, the jails: this benchmark reaps them, so it counts the orphans too), which the
machine's other load barely moves, and the CPU the stub LLM used meanwhile (it runs in this
process and shares the cores, where a real endpoint would not). For the first run also the sandbox's own work, read from the project's sandbox
result cache: the summed `duration_ms` of the jobs per stage (each job's wall time in its jail,
so it grows with the machine's load; a job's stage is the step whose time span holds the moment
a reply was stored; inside io_pairs, the reply's shape tells the first pass from the determinism
re-run), that sum over the jail count (the floor that job time alone sets with that many jails
in parallel, jail start-up not counted) as seconds, seconds per raw file and share of the
process, and the five functions with the most job seconds. Then the first shard's funnel, the
cost of publishing one more shard to a local folder that already holds 100 and 1,000 shards, and
a table of the shards' first runs. Last lines: `cpu_seconds_per_file=C`,
`floor_seconds_per_file=Z` (both means over shards) and
`seconds_per_file=X rerun_share=Y` (mean first-run seconds per raw file over shards; all reruns'
seconds / all first runs' seconds).

    .venv/bin/python benchmarks/pipeline.py [--shards 0,1,2] [--files 200] [--publish 100,1000]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import ctypes
import hashlib
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
RAW = FIXTURES / "codeio_rawcode_1k.jsonl"
PARSED = FIXTURES / "codeio_rawcode_1k_parsed.jsonl"
KEY_ENV = "CODEIO_BENCH_KEY"


def _norm(text: str) -> str:
    return " ".join(text.split())


def _literal(value):
    return ast.literal_eval(value) if isinstance(value, str) else value


class Replayer:
    """The authors' results, looked up from what a request shows (raw code or problem text)."""

    def __init__(self, raw_rows: list[dict], parsed_rows: list[dict]):
        by_index = {}
        for row in parsed_rows:
            ios = [io for io in _literal(row["ios"]) if isinstance(io.get("input"), dict)]
            if ios:
                by_index[_literal(row["meta"])["msgidx"]] = {**row, "ios": ios}
        self.by_code = {
            raw["content"].strip("\n")[:2000]: by_index.get(i) for i, raw in enumerate(raw_rows)
        }
        self.by_problem = {_norm(r["problem_description"])[:300]: r for r in by_index.values()}

    def refactor(self, prompt: str) -> str:
        match = re.search(r"(`{3,})python\n(.*?)\n\1", prompt, re.S)
        row = self.by_code.get(match.group(2)[:2000]) if match else None
        if row is None:
            return "This file has no self-contained logic that could be refactored."
        inputs = json.dumps([io["input"] for io in row["ios"]])
        generator = textwrap.dedent(
            f"""\
            import json
            import random

            _STORED = json.loads({inputs!r})

            def input_generator():
                return random.choice(_STORED)
            """
        )
        return (
            f"## Main Function\n```python\n{row['refcode'].strip()}\n```\n\n"
            f"## Input Output Description\n{row['io_requirements'].strip()}\n\n"
            f"## Input Generator\n```python\n{generator}```\n\n"
            f"## Problem Statement\n{row['problem_description'].strip()}\n"
        )

    def predict(self, prompt: str, turn: int) -> str:
        problem = re.search(r"## Problem\n(.*?)\n## Inputs and output", prompt, re.S)
        row = self.by_problem.get(_norm(problem.group(1))[:300]) if problem else None
        given = re.search(r"```json\n(.*?)\n```", prompt[prompt.find("## Given") :], re.S)
        if row is None or given is None:
            return 'I cannot tell.\n```json\n{"output": null}\n```'
        value = json.loads(given.group(1))
        wrong = turn == 0 and hashlib.sha256(prompt.encode()).digest()[0] < 128
        if "## Given input" in prompt:
            found = [io["output"] for io in row["ios"] if io["input"] == value]
            answer = {"output": "no idea" if wrong or not found else found[0]}
        else:
            found = [io["input"] for io in row["ios"] if io["output"] == value]
            answer = {"input": {} if wrong or not found else found[0]}
        return f"Tracing the function step by step.\n```json\n{json.dumps(answer)}\n```"

    def reply(self, messages: list[dict]) -> str:
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        if "## Given input" in prompt or "## Given output" in prompt:
            return self.predict(prompt, sum(m["role"] == "assistant" for m in messages))
        return self.refactor(prompt)


def write_project(root: Path, raw_rows: list[dict], base_url: str) -> Path:
    with open(root / "rawcode.jsonl", "w") as out:
        for row in raw_rows:
            out.write(json.dumps(row) + "\n")
    config = textwrap.dedent(
        f"""\
        data_dir: data
        sources:
          - {{name: rawcode, kind: jsonl, options: {{path: rawcode.jsonl, content_column: content}}}}
        shards: {{size: {len(raw_rows)}}}
        llm:
          base_url: {base_url}
          api_key_env: {KEY_ENV}
          cache_path: llm_cache.sqlite
          max_concurrency: 8
        stages:
          refactor: {{model: replay, max_tokens: 2048}}
          prediction: {{model: replay, max_tokens: 1024}}
          revision: {{model: replay, max_tokens: 1024}}
        tasks:
          kinds: {{output_prediction: 1, input_prediction: 1}}
        revision: {{turns: 1}}
        publish: {{target: local, local_dir: published}}
        """
    )
    path = root / "codeio.yaml"
    path.write_text(config)
    return path


# Phases of a `codeio demo` process, each ending at the first output line matching its pattern.
PHASES = [
    ("start: imports, config", r"\[codeio\] landing new raw code"),
    ("landing, instance, stale check", r"loading the code location|nothing was stale"),
    ("code location (code server) loaded", r": launching a run of"),
    ("run created and submitted", r"queued \(run"),
    ("dequeued, run process started", r": run process started"),
    ("run process to its first step", r": raw_code \.\.\.|: \w+ \.\.\.$"),
    ("steps, to the run's end", r"\[codeio\] done in"),
    ("funnel, process exit", r"$^"),  # to the end of the process
]


def run_demo(root: Path, config: Path, stub) -> dict:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        KEY_ENV: "not-a-secret",
        "PYTHONUNBUFFERED": "1",
    }
    before_requests = len(stub.requests)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = before.ru_utime + before.ru_stime
    own = resource.getrusage(resource.RUSAGE_SELF)
    own_before = own.ru_utime + own.ru_stime
    start = time.perf_counter()
    # stderr goes to a file: a pipe nobody reads while stdout is followed could fill and block.
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "codeio"), "demo", "--config", str(config)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        # Lines are timestamped as they arrive, to split the process's time into phases.
        lines: list[tuple[float, str]] = []
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
        proc.wait()
        errors.seek(0)
        stderr = errors.read()
    seconds = time.perf_counter() - start
    left = reap_orphans()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before
    own = resource.getrusage(resource.RUSAGE_SELF)
    stub_seconds = own.ru_utime + own.ru_stime - own_before
    stdout = "\n".join(line for _, line in lines)
    if proc.returncode != 0:
        sys.exit(f"codeio demo failed ({proc.returncode}):\n{stdout}\n{stderr[-4000:]}")
    return {
        "seconds": seconds,
        "requests": len(stub.requests) - before_requests,
        "cpu_seconds": cpu_seconds,
        "stub_cpu_seconds": stub_seconds,
        "left_running": left,
        "stdout": stdout,
        "phases": split_phases(lines, seconds),
    }


def become_subreaper() -> None:
    """Have orphaned descendants of the demo (a server, a jail) re-parented to this process, so
    that their CPU time reaches RUSAGE_CHILDREN when reap_orphans waits for them."""
    if sys.platform.startswith("linux"):
        pr_set_child_subreaper = 36  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans(wait_s: float = 60.0) -> int:
    """Wait for every child process left (orphans of the demo); how many still run after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid:
            continue
        if time.monotonic() > deadline:
            return sum(1 for proc in Path("/proc").glob("[0-9]*") if _ppid(proc) == os.getpid())
        time.sleep(0.05)


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def split_phases(lines: list[tuple[float, str]], seconds: float) -> dict[str, float]:
    """Seconds of each phase in PHASES that the output shows (a rerun skips the run's)."""
    phases, at, rest = {}, 0.0, lines
    for name, pattern in PHASES:
        hit = next((i for i, (_, text) in enumerate(rest) if re.search(pattern, text)), None)
        if hit is None and name != PHASES[-1][0]:
            continue
        end = seconds if hit is None else rest[hit][0]
        phases[name] = end - at
        at, rest = end, rest[hit + 1 :] if hit is not None else rest
    return phases


def step_windows(
    home: Path, run_ids_before: set[str]
) -> tuple[list[tuple[str, float, float]], set[str]]:
    """(step key, start, end) of every timed step of the runs new since `run_ids_before`."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = {r.run_id for r in instance.get_runs()}
        windows = [
            (stat.step_key, stat.start_time, stat.end_time)
            for run_id in runs - run_ids_before
            for stat in instance.get_run_step_stats(run_id)
            if stat.start_time is not None and stat.end_time is not None
        ]
    return windows, runs


def step_seconds(config: Path, windows: list[tuple[str, float, float]]) -> dict[str, float]:
    """Seconds per asset step; check steps summed."""
    from codeio_dagster.assets import build_assets
    from codeio_dagster.config import load_config

    assets = {k.to_user_string() for a in build_assets(load_config(config)) for k in a.keys}
    totals: dict[str, float] = defaultdict(float)
    for step, start, end in windows:
        totals[step if step in assets else "(asset check steps)"] += end - start
    return dict(totals)


def _stage_of(reply: dict, created_at: float, windows: list[tuple[str, float, float]]) -> str:
    """Which stage ran a job: the step whose time span holds the moment its reply was stored;
    inside io_pairs, the reply's shape tells the first pass from the determinism re-run."""
    step = next((key for key, start, end in windows if start <= created_at <= end), None)
    if step is None:
        return "(stored outside any step)"
    if step != "io_pairs":
        return step
    job_id = str(reply.get("id"))
    if "results" in reply or ("#" in job_id and "output" not in reply):
        # A re-run job ("<function>#<first pair>"); one that failed as a whole has no results.
        return "io_pairs determinism re-run"
    if "#" in job_id:
        return "io_pairs given pairs"  # single calls ("<function>#<pair>") of imported pairs
    return "io_pairs first pass"


def sandbox_jobs(
    root: Path, windows: list[tuple[str, float, float]]
) -> list[tuple[str, str, float]]:
    """(stage, function id, seconds) of every job in the project's sandbox result cache.

    The cache stores one reply per distinct request (a request repeated within a run counts
    once) with the `duration_ms` its jail measured from receiving the job to its reply, so jail
    start-up is not in it. Read right after the first run, it holds exactly what that run ran.
    """
    import polars as pl

    tasks = pl.read_parquet(root / "data" / "assets" / "prediction_tasks" / "*.parquet")
    function_of_task = dict(tasks.select("task_id", "function_id").iter_rows())
    path = root / "data" / "cache" / "sandbox_results.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT reply, created_at FROM sandbox_replies").fetchall()
    jobs = []
    for text, created_at in rows:
        reply = json.loads(text)
        job_id = str(reply.get("id")).split("#")[0]
        function = function_of_task.get(job_id, job_id)
        seconds = float(reply.get("duration_ms") or 0.0) / 1000
        jobs.append((_stage_of(reply, created_at, windows), function, seconds))
    return jobs


def report_sandbox(
    jobs: list[tuple[str, str, float]], jails: int, process_s: float, files: int
) -> float:
    """Print the sandbox's own work and the floor it sets; returns the floor in seconds."""
    stages: dict[str, list[float]] = defaultdict(list)
    by_function: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for stage, function, seconds in jobs:
        stages[stage].append(seconds)
        by_function[function][stage] += seconds
    print("  sandbox jobs (the result cache's replies; duration_ms as each jail timed the job):")
    order = ["io_pairs first pass", "io_pairs determinism re-run"]
    for stage in sorted(stages, key=lambda s: (order.index(s) if s in order else 2, s)):
        print(f"    {stage:<36} {len(stages[stage]):5d} jobs {sum(stages[stage]):8.2f} s")
    total = sum(seconds for _, _, seconds in jobs)
    floor = total / jails
    print(
        f"  sandbox job time {total:.1f} s over {jails} jails: a floor of {floor:.1f} s "
        f"({floor / files:.3f} s per raw file), {100 * floor / process_s:.0f} % of the process"
    )
    print("  slowest functions by job seconds (all stages; first pass, re-run, the rest):")
    slowest = sorted(by_function.items(), key=lambda kv: -sum(kv[1].values()))[:5]
    for function, seconds in slowest:
        first = seconds.get(order[0], 0.0)
        rerun = seconds.get(order[1], 0.0)
        rest = sum(v for stage, v in seconds.items() if stage not in order)
        print(
            f"    {function:<20} {sum(seconds.values()):7.2f} s  "
            f"({first:.2f} + {rerun:.2f} + {rest:.2f})"
        )
    return floor


def publication_costs(root: Path, points: list[int], sample: int = 5) -> dict[int, float]:
    """Median seconds of publishing one shard into a local folder holding N shards already."""
    import polars as pl

    from codeio_dagster.publish import CardInfo, LocalFolderPublisher, PublishSettings

    published = root / "data" / "assets"
    tables = {
        config: pl.read_parquet(next((published / f"{config}_dataset").glob("*.parquet")))
        for config in ("codeio", "codeio_pp", "unified")
    }
    # Small tables: the cost measured is the bookkeeping around a shard, not its Parquet bytes.
    tables = {name: frame.head(5) for name, frame in tables.items()}
    publisher = LocalFolderPublisher(
        settings=PublishSettings(local_dir=str(root / "publication_bench"))
    )
    info = CardInfo(funnel={"raw_files": 200, "functions": 67})
    costs, times = {}, []
    for n in range(max(points) + sample):
        start = time.perf_counter()
        publisher.publish_partition(f"bench-{n:05d}", tables, info)
        times.append(time.perf_counter() - start)
        for point in points:
            if n == point + sample - 1:
                costs[point] = statistics.median(times[point:])
    return costs


def _count(funnel: str, label: str) -> str:
    match = re.search(rf"^\s*{label}\s+(\d+)$", funnel, re.M)
    return match.group(1) if match else "?"


def run_shard(shard: int, rows: list[dict], root: Path, stub) -> dict:
    """A fresh project on one shard: the first run, its sandbox work, the unchanged rerun."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_project(root, rows, stub.base_url)
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    from codeio_dagster.config import load_config

    jails = load_config(config).sandbox.worker_count()
    results, seen = [], set()
    for label in ("first run", "unchanged rerun"):
        result = run_demo(root, config, stub)
        windows, seen = step_windows(home, seen)
        steps = step_seconds(config, windows)
        results.append(result)
        print(f"== shard {shard}, {label}: codeio demo on {len(rows)} raw files")
        for step, seconds in sorted(steps.items(), key=lambda kv: -kv[1]):
            print(f"  {step:<34} {seconds:8.2f} s")
        outside = result["seconds"] - sum(steps.values())
        print(f"  {'(outside steps: start, landing, runs)':<34} {outside:8.2f} s")
        print("  the whole process by phase (from its output lines as they came):")
        for phase, seconds in result["phases"].items():
            print(f"    {phase:<38} {seconds:8.2f} s")
        print(
            f"  whole process {result['seconds']:.2f} s, "
            f"{result['seconds'] / len(rows):.4f} s per raw file, "
            f"{result['requests']} LLM requests"
        )
        print(
            f"  CPU of the process and all it started (user + sys): {result['cpu_seconds']:.2f} s, "
            f"{result['cpu_seconds'] / len(rows):.4f} s per raw file"
            + (f"; {result['left_running']} still running" if result["left_running"] else "")
        )
        # A real endpoint runs elsewhere; this one shares the 2 cores with the pipeline.
        print(
            f"  CPU of the stub LLM (this process, alongside): {result['stub_cpu_seconds']:.2f} s"
        )
        if label == "first run":
            jobs = sandbox_jobs(root, windows)
            floor = report_sandbox(jobs, jails, result["seconds"], len(rows))
    first, rerun = results
    funnel = first["stdout"].split("funnel", 1)[-1].split("elapsed")[0]
    return {
        "shard": shard,
        "files": len(rows),
        "seconds": first["seconds"],
        "rerun_seconds": rerun["seconds"],
        "cpu_seconds": first["cpu_seconds"],
        "floor": floor,
        "funnel": funnel,
        "functions": _count(funnel, "functions with enough I/O pairs"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shards", default="0", help="200-row blocks of the 1k file, each a fresh project: 0,1,2"
    )
    parser.add_argument("--shard", type=int, help="one shard (the same as --shards N)")
    parser.add_argument("--files", type=int, default=200, help="raw files in a shard")
    parser.add_argument("--publish", default="100,1000", help="published shard counts to time")
    parser.add_argument("--keep", help="work in this folder (a project per shard) and keep it")
    args = parser.parse_args()
    shards = [args.shard] if args.shard is not None else [int(s) for s in args.shards.split(",")]
    if not RAW.exists() or not PARSED.exists():
        print(f"fixtures not found under {FIXTURES}: this benchmark needs ../shared/fixtures")
        return 1
    raw_rows = [json.loads(line) for line in RAW.read_text().splitlines() if line.strip()]
    parsed_rows = [json.loads(line) for line in PARSED.read_text().splitlines() if line.strip()]
    blocks = {s: raw_rows[s * args.files : (s + 1) * args.files] for s in shards}
    if not all(blocks.values()):
        empty = [s for s, rows in blocks.items() if not rows]
        print(f"shard(s) {empty} are past the end of {RAW.name} ({len(raw_rows)} rows)")
        return 1
    # The graph tests' chat-completions server (real HTTP on 127.0.0.1), replaying the sample.
    sys.path.insert(0, str(ROOT))
    from tests.graph.conftest import ScriptedLLM

    stub = ScriptedLLM(reply=Replayer(raw_rows, parsed_rows).reply)
    become_subreaper()
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="codeio-pipeline-bench-")
    base = Path(args.keep or tmp.name).resolve()
    try:
        done = [run_shard(s, blocks[s], base / f"shard-{s}", stub) for s in shards]
        print(f"== funnel of shard {shards[0]}'s first run" + done[0]["funnel"].rstrip())
        points = [int(p) for p in args.publish.split(",") if p]
        costs = publication_costs(base / f"shard-{shards[0]}", points)
        print("== publishing one shard into a local folder that holds N shards")
        for point in points:
            print(f"  N={point:<6} {costs[point] * 1000:8.1f} ms")
        if len(points) >= 2:
            print(
                f"  ratio N={points[-1]} / N={points[0]}: {costs[points[-1]] / costs[points[0]]:.2f}"
            )
        print("== first runs per shard (floor: sandbox job seconds / jails)")
        # "s/file - floor": what the process costs per raw file beyond the sandbox jobs' floor.
        print(
            "  shard  functions  seconds  s/file  floor s  floor s/file  floor share  "
            "s/file - floor  rerun share  CPU s/file"
        )
        for r in done:
            print(
                f"  {r['shard']:>5}  {r['functions']:>9}  {r['seconds']:7.2f}  "
                f"{r['seconds'] / r['files']:6.4f}  {r['floor']:7.2f}  "
                f"{r['floor'] / r['files']:12.4f}  {100 * r['floor'] / r['seconds']:9.0f} %  "
                f"{(r['seconds'] - r['floor']) / r['files']:14.4f}  "
                f"{r['rerun_seconds'] / r['seconds']:11.3f}  "
                f"{r['cpu_seconds'] / r['files']:10.4f}"
            )
        per_file = statistics.mean(r["seconds"] / r["files"] for r in done)
        floor_per_file = statistics.mean(r["floor"] / r["files"] for r in done)
        if len(done) > 1:
            print(
                f"  mean {per_file:.4f} s per raw file, floor {floor_per_file:.4f}, "
                f"beyond the floor {per_file - floor_per_file:.4f}"
            )
        cpu_per_file = statistics.mean(r["cpu_seconds"] / r["files"] for r in done)
        print(f"cpu_seconds_per_file={cpu_per_file:.4f}")
        print(f"floor_seconds_per_file={floor_per_file:.4f}")
        rerun_share = sum(r["rerun_seconds"] for r in done) / sum(r["seconds"] for r in done)
        print(f"seconds_per_file={per_file:.4f} rerun_share={rerun_share:.3f}")
    finally:
        stub.close()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

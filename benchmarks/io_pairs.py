"""I/O-pair cost: the determinism re-run, jail start-ups across steps, and the result cache.

Functions are the CodeI/O authors' unified functions (`codeio_rawcode_1k_parsed.jsonl`), each
with an input generator that draws one of its stored inputs. Measured side by side in one run:

1. (gone: the re-run as one job per pair against one job per function; the per-pair way no
   longer exists to compare with, and the re-run now runs inside the generation's batch);
2. two steps (io_pairs, then a verdicts-like step of heavy jobs) each with its own executor (how
   it was) against both on the one warm executor: jail start-ups and seconds;
3. generation plus re-run without a cache, then the same again answered by the result cache;
4. a shard's io_pairs (generation and re-run, so heavy jails of both hash seeds) on fresh jails
   that preload all of heavy_preload (how it was) against jails that preload only the heavy
   modules the shard's functions name (`heavy_preload_scope`), in alternating order: seconds,
   CPU seconds of the jails, and what the heavy jails preloaded;
5. a shard's io_pairs on fresh jails with the jobs in queue order (no cost estimates: each
   slot keeps its pool while it has jobs, as before `sandbox/schedule.py`) against the
   schedule's order (re-runs longest first by their first pass's duration, a jail's start
   counted as work), alternating: seconds against the floor the jobs set (their summed
   `duration_ms` over the jails), slot-seconds with no job running (jail start-ups and
   imbalance), and whether both ways gave the same outcomes.

Usage: `.venv/bin/python benchmarks/io_pairs.py [--functions 120] [--rounds 2] [--shard 93]
[--shards 2] [--only-preload] [--only-schedule]` (93: the functions of one 200-file shard of the
fixture; sections 4 and 5 run on the first `--shards` such shards, `--only-preload` and
`--only-schedule` run one of them alone).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

from codeio_dagster.sandbox import Executor, FunctionSpec, IOPairLimits, SandboxSettings
from codeio_dagster.sandbox.cache import SqliteResultCache
from codeio_dagster.sandbox.iopairs import generate_io_pairs

FIXTURES = Path(
    os.environ.get("CODEIO_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures")
)


def load_functions(n: int) -> list[FunctionSpec]:
    """n fixture functions with a generator replaying their stored inputs."""
    path = FIXTURES / "codeio_rawcode_1k_parsed.jsonl"
    if not path.is_file():
        raise SystemExit(f"fixture {path} not found (set CODEIO_FIXTURES)")
    specs = []
    for i, line in enumerate(path.open()):
        row = json.loads(line)
        inputs = [io["input"] for io in row["ios"] if isinstance(io.get("input"), dict)]
        if not inputs:
            continue
        # A JSON string literal is a Python string literal too.
        generator = (
            "\n\ndef input_generator():\n    import json as _j, random as _r\n"
            f"    return _r.choice(_j.loads({json.dumps(json.dumps(inputs))}))\n"
        )
        specs.append(FunctionSpec(id=f"f{i}", code=row["refcode"] + generator))
    random.Random(0).shuffle(specs)
    return specs[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shard", type=int, default=93)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--only-preload", action="store_true")
    ap.add_argument("--only-schedule", action="store_true")
    args = ap.parse_args()
    settings = SandboxSettings(timeout_s=5.0)
    limits = IOPairLimits(time_budget_s=20)
    if args.only_preload:
        return preload_section(args, settings, limits)
    if args.only_schedule:
        return schedule_section(args, settings, limits)
    specs = load_functions(args.functions)

    heavy = [s for s in specs if Executor(settings).is_heavy(s.code)][:6] or specs[:6]
    steps_jobs = [s.model_copy(update={"id": s.id + "-v"}) for s in heavy]

    def two_steps(shared: Executor | None) -> tuple[float, int]:
        start = time.perf_counter()
        starts = 0
        for step in (specs[: len(specs) // 4], steps_jobs):
            if shared is None:
                with Executor(settings) as ex:
                    generate_io_pairs(ex, step, limits)
                    starts += sum(ex.jail_starts.values())
            else:
                before = sum(shared.jail_starts.values())
                generate_io_pairs(shared, step, limits)
                starts += sum(shared.jail_starts.values()) - before
        return time.perf_counter() - start, starts

    with Executor(settings) as warm:
        generate_io_pairs(warm, steps_jobs[:1] + specs[:1], limits)  # the run's first step
        cold_s, cold_starts = two_steps(None)
        warm_s, warm_starts = two_steps(warm)
    print(
        f"two steps with an executor each: {cold_s:.2f} s, {cold_starts} jail starts; "
        f"on the run's warm executor: {warm_s:.2f} s, {warm_starts} jail starts; "
        f"ratio {cold_s / max(warm_s, 1e-9):.2f}x"
    )

    with tempfile.TemporaryDirectory() as tmp, Executor(settings) as ex:
        cache = SqliteResultCache(Path(tmp) / "cache.sqlite")
        generate_io_pairs(ex, specs[:2], limits)  # start the jails outside the timing
        start = time.perf_counter()
        first = generate_io_pairs(ex, specs, limits, cache=cache)
        first_s = time.perf_counter() - start
        ran = ex.requests_run
        start = time.perf_counter()
        again = generate_io_pairs(ex, specs, limits, cache=cache)
        again_s = time.perf_counter() - start
        assert [o.model_dump() for o in again] == [o.model_dump() for o in first]
        print(
            f"io_pairs of {len(specs)} functions: first {first_s:.2f} s, unchanged rerun "
            f"{again_s:.3f} s from the cache ({ex.requests_run - ran} jobs run), "
            f"rerun_share={again_s / max(first_s, 1e-9):.4f}"
        )
        cache.close()

    preload_section(args, settings, limits)
    return schedule_section(args, settings, limits)


def preload_section(args, settings, limits) -> int:
    """Section 4 on each of the first `--shards` shards of the fixture's functions."""
    return per_shard(shard_preload, args, settings, limits)


def per_shard(section, args, settings, limits) -> int:
    functions = load_functions(args.shard * args.shards)
    for i in range(args.shards):
        section(functions[i * args.shard : (i + 1) * args.shard], settings, limits, args.rounds)
    return 0


def shard_preload(shard: list[FunctionSpec], settings, limits, rounds: int) -> None:
    """Section 4: one shard's io_pairs on fresh jails, by heavy_preload_scope."""
    probe = Executor(settings)
    named = sorted({m for s in shard for m in probe.heavy_needs(s.code)})
    heavy = sum(probe.is_heavy(s.code) for s in shard)
    totals = {scope: [0.0, 0.0, 0, 0] for scope in ("all", "named")}
    for r in range(rounds):
        for scope in ("all", "named") if r % 2 == 0 else ("named", "all"):
            scoped = settings.model_copy(update={"heavy_preload_scope": scope})
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            with Executor(scoped) as ex:
                generate_io_pairs(ex, shard, limits)
                starts = [preload for key, preload in ex.jail_preloads if key[1]]
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
            total = totals[scope]
            total[0] += wall
            total[1] += used
            total[2] += len(starts)
            total[3] += sum(len(p) - len(settings.preload) for p in starts)
    all_, named_ = totals["all"], totals["named"]
    print(
        f"io_pairs of a {len(shard)}-function shard ({heavy} heavy, naming "
        f"{', '.join(named) or 'none'}) on fresh jails, {rounds} rounds: preloading all of "
        f"heavy_preload {all_[0]:.2f} s, jails' CPU {all_[1]:.2f} s, {all_[2]} heavy starts "
        f"preloading {all_[3]} modules; only what the shard names {named_[0]:.2f} s, jails' CPU "
        f"{named_[1]:.2f} s, {named_[2]} heavy starts preloading {named_[3]} modules; ratio "
        f"{all_[0] / max(named_[0], 1e-9):.2f}x seconds, {all_[1] / max(named_[1], 1e-9):.2f}x "
        "jail CPU"
    )


def schedule_section(args, settings, limits) -> int:
    """Section 5 on each of the first `--shards` shards of the fixture's functions."""
    return per_shard(shard_schedule, args, settings, limits)


def timed_io_pairs(shard, settings, limits, estimates: bool):
    """io_pairs on fresh jails: (seconds, job spans (start, end) in seconds, outcomes)."""
    spans: list[tuple[float, float]] = []
    with Executor(settings) as ex:
        run_requests = ex.run_requests

        def recording(requests, **kwargs):
            if not estimates:
                kwargs.pop("expected_ms", None)  # every job of unknown cost: queue order
            on_reply = kwargs.pop("on_reply", None)

            def stamp(i, reply):
                end = time.perf_counter() - start
                spans.append((end - float(reply.get("duration_ms") or 0.0) / 1000, end))
                if on_reply is not None:
                    on_reply(i, reply)

            return run_requests(requests, on_reply=stamp, **kwargs)

        ex.run_requests = recording
        start = time.perf_counter()
        outcomes = generate_io_pairs(ex, shard, limits)
        wall = time.perf_counter() - start
    return wall, spans, outcomes


def idle_slot_seconds(spans: list[tuple[float, float]], wall: float, slots: int) -> float:
    """Slot-seconds in [0, wall] with fewer jobs running than there are slots."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running, last, idle = 0, 0.0, 0.0
    for t, step in points:
        idle += max(0, slots - running) * max(0.0, t - last)
        running, last = running + step, t
    return idle + slots * max(0.0, wall - last)


def shard_schedule(shard: list[FunctionSpec], settings, limits, rounds: int) -> None:
    """Section 5: one shard's io_pairs, jobs in queue order against the schedule's order."""
    slots = settings.worker_count()
    totals = {way: [0.0, 0.0, 0.0] for way in ("queue order", "schedule")}
    seen: dict[str, list] = {}
    for r in range(rounds):
        for way in ("queue order", "schedule") if r % 2 == 0 else ("schedule", "queue order"):
            wall, spans, outcomes = timed_io_pairs(shard, settings, limits, way == "schedule")
            total = totals[way]
            total[0] += wall
            total[1] += sum(e - s for s, e in spans) / slots
            total[2] += idle_slot_seconds(spans, wall, slots)
            # A nondeterministic function's error quotes a fresh value: compare the rest.
            seen.setdefault(way, []).append([(o.function_id, o.status, o.pairs) for o in outcomes])
    same = all(run == seen["schedule"][0] for runs in seen.values() for run in runs)
    line = [f"io_pairs of a {len(shard)}-function shard on fresh jails, {rounds} rounds:"]
    for way, (wall, floor, idle) in totals.items():
        line.append(
            f"{way} {wall:.2f} s over a floor of {floor:.2f} s (gap {wall - floor:.2f} s, "
            f"{idle:.2f} slot-seconds idle);"
        )
    line.append(f"same outcomes (status, pairs) every run: {same}")
    print(" ".join(line))


if __name__ == "__main__":
    raise SystemExit(main())

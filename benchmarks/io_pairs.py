"""I/O-pair cost: the determinism re-run, jail start-ups across steps, and the result cache.

Functions are the CodeI/O authors' unified functions (`codeio_rawcode_1k_parsed.jsonl`), each
with an input generator that draws one of its stored inputs. Measured side by side in one run:

1. the determinism re-run as one job per pair (how it was: a request, a fork and a module load
   per pair) against one job per function (each call still a fresh fork of the loaded module),
   in alternating order over the rounds, on the same warm jails, same pairs, same hash seed;
2. two steps (io_pairs, then a verdicts-like step of heavy jobs) each with its own executor (how
   it was) against both on the one warm executor: jail start-ups and seconds;
3. generation plus re-run without a cache, then the same again answered by the result cache;
4. a shard's io_pairs (generation and re-run, so heavy jails of both hash seeds) on fresh jails
   that preload all of heavy_preload (how it was) against jails that preload only the heavy
   modules the shard's functions name (`heavy_preload_scope`), in alternating order: seconds,
   CPU seconds of the jails, and what the heavy jails preloaded.

Usage: `.venv/bin/python benchmarks/io_pairs.py [--functions 120] [--rounds 2] [--shard 93]
[--shards 2] [--only-preload]` (93: the functions of one 200-file shard of the fixture; section 4
runs on the first `--shards` such shards, `--only-preload` runs section 4 alone).
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
from codeio_dagster.sandbox.iopairs import _recheck, generate_io_pairs

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


def recheck_per_pair(executor: Executor, outcomes) -> int:
    """The old re-run: one request per kept pair under the other hash seed; mismatches found."""
    seed = executor.settings.hash_seed + 1
    requests = []
    wanted = []
    for out in outcomes:
        if out.status != "ok":
            continue
        for i, pair in enumerate(out.pairs):
            req = executor.base_request(None)
            req.update(
                kind="call",
                id=f"{out.function_id}#{i}",
                code=codes[out.function_id],
                call="main_solution",
                input=json.loads(pair.input),
            )
            requests.append((seed, req))
            wanted.append(pair.output)
    replies = executor.run_requests(requests)
    return sum(r.get("output") != w for r, w in zip(replies, wanted, strict=True))


codes: dict[str, str] = {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shard", type=int, default=93)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--only-preload", action="store_true")
    args = ap.parse_args()
    settings = SandboxSettings(timeout_s=5.0)
    limits = IOPairLimits(time_budget_s=20)
    if args.only_preload:
        return preload_section(args, settings, limits)
    specs = load_functions(args.functions)
    codes.update({s.id: s.code for s in specs})
    no_recheck = limits.model_copy(update={"determinism_check": False})

    with Executor(settings) as ex:
        outcomes = generate_io_pairs(ex, specs, no_recheck)
        kept = [o for o in outcomes if o.status == "ok"]
        # Functions whose whole generation took under 0.3 s: where the cost per call is the
        # executor's own rather than the function's computing.
        fast = [o for o in kept if o.duration_ms < 300]
        for label, subset in (("all", kept), ("fast", fast)):
            pairs = sum(len(o.pairs) for o in subset)
            # Warm every pool both ways use before timing.
            _recheck(ex, specs, [o.model_copy(deep=True) for o in subset], None)
            recheck_per_pair(ex, subset)
            per_pair = per_function = 0.0
            for r in range(args.rounds):
                order = ("pair", "function") if r % 2 == 0 else ("function", "pair")
                for way in order:
                    start = time.perf_counter()
                    if way == "pair":
                        recheck_per_pair(ex, subset)
                        per_pair += time.perf_counter() - start
                    else:
                        _recheck(ex, specs, [o.model_copy(deep=True) for o in subset], None)
                        per_function += time.perf_counter() - start
            print(
                f"re-run of {pairs} pairs of {len(subset)} functions ({label}), {args.rounds} "
                f"rounds: one job per pair {per_pair:.2f} s, one job per function "
                f"{per_function:.2f} s, ratio {per_pair / max(per_function, 1e-9):.2f}x"
            )

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

    return preload_section(args, settings, limits)


def preload_section(args, settings, limits) -> int:
    """Section 4 on each of the first `--shards` shards of the fixture's functions."""
    functions = load_functions(args.shard * args.shards)
    for i in range(args.shards):
        shard_preload(
            functions[i * args.shard : (i + 1) * args.shard], settings, limits, args.rounds
        )
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


if __name__ == "__main__":
    raise SystemExit(main())

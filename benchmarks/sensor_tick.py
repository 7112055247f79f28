"""Cost of raw-code sensor ticks and of landing, measured side by side in one run.

1. Idle ticks: a folder of N small `.py` files and a JSONL table of N rows are landed once; a
   tick that finds nothing new goes through `land_new_shards` with the sources' cheap listing
   (paths, sizes, mtimes) and with the listing switched off (every file read and hashed).
2. Append ticks: a JSONL table with few and with many rows landed before gets one shard's worth
   of rows appended; the tick that lands them is timed resuming from where the last tick stopped
   and reading the table from its top (resuming switched off), and the index rows it read from
   storage are counted (the process knows the index from its earlier ticks, as the sensor's
   does). The ratio large / small shows whether a tick grows with what was landed before.
3. Landing memory: a folder of small and of large file counts is landed in a fresh process,
   streaming (shards written as they fill) and all at once (every shard planned in memory, then
   written); peak RSS above the process's RSS before landing, as a ratio large / small.
4. Partition lookups: the shards `codeio demo` registers are found missing with one question
   to the Dagster instance, counted.

    .venv/bin/python benchmarks/sensor_tick.py [--files 20000] [--rows 1000 50000]
        [--memory-files 1000 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD = 200


def _corpus(root: Path, n: int) -> None:
    folder = root / "py"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"f{i:06d}.py").write_text(f"def f{i}(xs):\n    return sum(xs) + {i}\n" * 8)
    rows = (json.dumps({"path": f"r{i}.py", "content": f"x = {i}\n" * 40}) for i in range(n))
    (root / "rows.jsonl").write_text("\n".join(rows) + "\n")


def _median_tick(config, landing_dir: Path, repeat: int) -> float:
    from codeio_dagster.landing import Landing
    from codeio_dagster.shards import land_new_shards

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        landed = land_new_shards(config, Landing(landing_dir))
        times.append(time.perf_counter() - start)
        assert landed == [], "an idle tick landed something"
    return statistics.median(times)


def idle_ticks(files: int, repeat: int) -> None:
    from codeio_dagster.config import parse_config
    from codeio_dagster.landing import Landing
    from codeio_dagster.shards import land_new_shards
    from codeio_dagster.sources import FolderSource, JsonlSource

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _corpus(root / "raw", files)
        data = {
            "sources": [
                {"name": "py", "kind": "folder", "options": {"path": "raw/py", "glob": "*.py"}},
                {"name": "jl", "kind": "jsonl", "options": {"path": "raw/rows.jsonl"}},
            ],
            "shards": {"size": SHARD},
        }
        config = parse_config(data, base_dir=root)
        landing_dir = root / "landing"
        start = time.perf_counter()
        first = land_new_shards(config, Landing(landing_dir))
        print(
            f"first tick: {len(first)} shards from {2 * files} raw files in "
            f"{time.perf_counter() - start:.2f}s"
        )

        listed = _median_tick(config, landing_dir, repeat)
        original = {cls: cls.units for cls in (FolderSource, JsonlSource)}
        for cls in original:
            cls.units = lambda self: None
        full = _median_tick(config, landing_dir, repeat)
        for cls, units in original.items():
            cls.units = units
        print(f"idle tick, listed: {listed * 1000:8.1f} ms")
        print(f"idle tick, full:   {full * 1000:8.1f} ms")

        (root / "raw" / "py" / "new.py").write_text("def new(xs):\n    return xs\n")
        start = time.perf_counter()
        (added,) = land_new_shards(config, Landing(landing_dir))
        print(
            f"tick with one new file, listed: {(time.perf_counter() - start) * 1000:.1f} ms "
            f"(landed {added.name})"
        )
        print(f"ratio_idle_full_over_listed={full / listed:.1f}")


def _rows(start: int, n: int) -> str:
    return "".join(
        json.dumps({"path": f"r{i}.py", "content": f"def r{i}(xs):\n    return xs\n" * 10}) + "\n"
        for i in range(start, start + n)
    )


def _append_tick_ms(landed_rows: int, repeat: int, *, resume: bool) -> tuple[float, float]:
    """Median ms of a tick landing one appended shard into a table of `landed_rows` rows, and
    the index rows a tick read from storage (the process landed the table before, as the
    sensor's process has by its second tick)."""
    from codeio_dagster.config import parse_config
    from codeio_dagster.landing import Landing
    from codeio_dagster.shards import land_new_shards
    from codeio_dagster.sources.files import JsonlSource

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = root / "rows.jsonl"
        table.write_text(_rows(0, landed_rows))
        data = {
            "sources": [{"name": "jl", "kind": "jsonl", "options": {"path": "rows.jsonl"}}],
            "shards": {"size": SHARD},
        }
        config, landing = parse_config(data, base_dir=root), Landing(root / "landing")
        land_new_shards(config, landing)
        resume_from = JsonlSource._resume
        if not resume:
            JsonlSource._resume = lambda self, path, position: None
        try:
            times, total = [], landed_rows
            rows_read = landing.landed().rows_read
            for _ in range(repeat):
                with table.open("a") as handle:
                    handle.write(_rows(total, SHARD))
                total += SHARD
                start = time.perf_counter()
                (added,) = land_new_shards(config, landing)
                times.append(time.perf_counter() - start)
                assert added.rows.height == SHARD
            rows_read = (landing.landed().rows_read - rows_read) / repeat
        finally:
            JsonlSource._resume = resume_from
        return statistics.median(times) * 1000, rows_read


def append_ticks(small: int, large: int, repeat: int) -> None:
    results = {}
    for resume in (True, False):
        for rows in (small, large):
            results[resume, rows] = _append_tick_ms(rows, repeat, resume=resume)
    for resume, label in ((True, "resumed "), (False, "from top")):
        (a, read_a), (b, read_b) = results[resume, small], results[resume, large]
        print(
            f"append tick ({SHARD} new rows), {label}: {small:>7,} landed {a:8.1f} ms, "
            f"{large:>7,} landed {b:8.1f} ms, ratio {b / a:5.2f}; index rows read per tick "
            f"{read_a:.0f} and {read_b:.0f}"
        )
    ratio = results[True, large][0] / results[True, small][0]
    print(f"ratio_append_tick_large_over_small={ratio:.2f} (rows ratio {large / small:.0f})")


_LAND = """
import sys
from pathlib import Path
from codeio_dagster.config import parse_config
from codeio_dagster.landing import Landing
from codeio_dagster.shards import land_new_shards, plan_shards
from codeio_dagster.sources import build_source

def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

root, mode = Path(sys.argv[1]), sys.argv[2]
data = {"sources": [{"name": "py", "kind": "folder", "options": {"path": "py"}}],
        "shards": {"size": 200}}
config, landing = parse_config(data, base_dir=root), Landing(root / mode)
# Reset the peak RSS (VmHWM) to the current RSS, so imports do not count as landing.
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status_kb("VmRSS")
if mode == "streaming":
    landed = land_new_shards(config, landing)
else:  # every shard planned in memory, then written, as landing did before it streamed
    source = build_source(config.sources[0])
    landed = plan_shards(source.scan(), source="py", index=landing.index(), shard_size=200)
    landing.write(landed)
peak = status_kb("VmHWM")
print(max(peak - before, 0), sum(s.rows.height for s in landed))
"""


def _land_peak_mb(files: int, mode: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "py").mkdir()
        # About 14 KB a file, the mean of the files behind the 715 MB at 50K files of issue 14.
        body = "".join(f"def f(xs):\n    return sum(xs) + {j}\n" for j in range(400))
        for i in range(files):
            (root / "py" / f"f{i:06d}.py").write_text(f"# file {i}\n{body}")
        out = subprocess.run(
            [sys.executable, "-c", _LAND, str(root), mode], capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(out.stderr)
        grown_kb, landed = map(int, out.stdout.split())
        assert landed == files
        return grown_kb / 1024


def landing_memory(small: int, large: int) -> None:
    ratios = {}
    for mode in ("streaming", "all_at_once"):
        a, b = _land_peak_mb(small, mode), _land_peak_mb(large, mode)
        ratios[mode] = b / max(a, 1e-9)
        print(
            f"landing peak RSS growth, {mode:<11}: {small:>6,} files {a:7.1f} MB, "
            f"{large:>6,} files {b:7.1f} MB, ratio {ratios[mode]:5.2f}"
        )
    print(
        f"ratio_landing_memory_large_over_small={ratios['streaming']:.2f} "
        f"(files ratio {large / small:.0f}; all at once {ratios['all_at_once']:.2f})"
    )


def partition_lookups(n: int) -> None:
    import dagster as dg

    from codeio_dagster.partitions import add_missing_shards, shards

    instance = dg.DagsterInstance.ephemeral()
    calls = {"get_dynamic_partitions": 0, "has_dynamic_partition": 0}
    for method in calls:
        real = getattr(instance, method)

        def counted(*args, _real=real, _method=method, **kwargs):
            calls[_method] += 1
            return _real(*args, **kwargs)

        setattr(instance, method, counted)
    names = [f"s-{i:05d}" for i in range(n)]
    instance.add_dynamic_partitions(shards.name, names[: n // 2])
    start = time.perf_counter()
    missing = add_missing_shards(instance, names)
    seconds = time.perf_counter() - start
    assert len(missing) == n - n // 2
    print(
        f"partition lookups for {n:,} shards: get_dynamic_partitions={calls['get_dynamic_partitions']}"
        f" has_dynamic_partition={calls['has_dynamic_partition']} ({seconds * 1000:.0f} ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--rows", type=int, nargs=2, default=[1_000, 50_000])
    parser.add_argument("--memory-files", type=int, nargs=2, default=[1_000, 10_000])
    parser.add_argument("--shards", type=int, default=4_050)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    idle_ticks(args.files, args.repeat)
    append_ticks(*args.rows, args.repeat)
    landing_memory(*args.memory_files)
    partition_lookups(args.shards)
    return 0


if __name__ == "__main__":
    sys.exit(main())

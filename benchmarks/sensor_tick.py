"""Cost of a raw-code sensor tick: listing-based landing vs re-reading every source file.

A folder of N small `.py` files and a JSONL table of N rows are landed once. Then, in one run
and side by side, the same ticks go through `land_new_shards` with the sources' cheap listing
(paths, sizes, mtimes) and with the listing switched off (every file read and hashed, as before):
a tick that finds nothing new, and a tick after one new file. Reported: median seconds per tick
and the ratio full / listed.

    .venv/bin/python benchmarks/sensor_tick.py [--files 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _corpus(root: Path, n: int) -> None:
    folder = root / "py"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"f{i:06d}.py").write_text(f"def f{i}(xs):\n    return sum(xs) + {i}\n" * 8)
    rows = (json.dumps({"path": f"r{i}.py", "content": f"x = {i}\n" * 40}) for i in range(n))
    (root / "rows.jsonl").write_text("\n".join(rows) + "\n")


def _median_tick(config, landing_dir: Path, repeat: int) -> float:
    from codeio_dagster.shards import Landing, land_new_shards

    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        landed = land_new_shards(config, Landing(landing_dir))
        times.append(time.perf_counter() - start)
        assert landed == [], "an idle tick landed something"
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from codeio_dagster.config import parse_config
    from codeio_dagster.shards import Landing, land_new_shards
    from codeio_dagster.sources import FolderSource, JsonlSource

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _corpus(root / "raw", args.files)
        data = {
            "sources": [
                {"name": "py", "kind": "folder", "options": {"path": "raw/py", "glob": "*.py"}},
                {"name": "jl", "kind": "jsonl", "options": {"path": "raw/rows.jsonl"}},
            ],
            "shards": {"size": 200},
        }
        config = parse_config(data, base_dir=root)
        landing_dir = root / "landing"
        start = time.perf_counter()
        first = land_new_shards(config, Landing(landing_dir))
        print(
            f"first tick: {len(first)} shards from {2 * args.files} raw files in "
            f"{time.perf_counter() - start:.2f}s"
        )

        listed = _median_tick(config, landing_dir, args.repeat)
        original = {cls: cls.units for cls in (FolderSource, JsonlSource)}
        for cls in original:
            cls.units = lambda self: None
        full = _median_tick(config, landing_dir, args.repeat)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())

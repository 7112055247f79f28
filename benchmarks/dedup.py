"""Near-duplicate detection at scale: speed, peak memory, recall and precision on planted copies.

N synthetic functions (random statements over random names and constants), of which a share are
planted near-copies of another one: every identifier renamed, comments and docstring changed,
sometimes one statement edited. Shuffled, split into shards, and run through the path the asset
uses (`drop_near_duplicates`: normalise, signature, query the stored index of the earlier shards,
store this shard's part) on a temporary folder.

Printed: functions per second (and the share of time spent on signatures vs reloading the earlier
shards' stored index), the process's peak RSS over its start, recall and precision on the
planted pairs. A detection counts as right when it pairs a copy with its original, either way
round (the shuffle may put the copy first) or two copies of one original with each other. Last line `recall=R`.

Usage: `.venv/bin/python benchmarks/dedup.py [--functions 100000] [--copies 0.1] [--shards 10]`.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import tempfile
import time
from pathlib import Path

import polars as pl

from codeio_dagster import dedup
from codeio_dagster.models import UnifiedFunctionRecord, polars_schema

OPS = ["+", "-", "*", "//", "%", "^", "|", "&"]
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "count",
    "total",
    "index",
    "value",
    "item",
    "node",
    "left",
    "right",
    "size",
    "step",
    "acc",
]


def _name(rng: random.Random) -> str:
    return rng.choice(WORDS) + "_" + str(rng.randrange(1000))


def _statement(rng: random.Random, names: list[str], depth: int = 0) -> list[str]:
    a, b = rng.choice(names), rng.choice(names)
    kind = rng.randrange(6 if depth < 2 else 3)
    if kind == 0:
        return [f"{a} = {b} {rng.choice(OPS)} {rng.randrange(1, 100)}"]
    if kind == 1:
        target = _name(rng)
        names.append(target)
        return [f"{target} = [{a} {rng.choice(OPS)} k for k in range({rng.randrange(2, 20)})]"]
    if kind == 2:
        return [f"{a} = {rng.choice(['max', 'min', 'abs'])}({b}, {rng.randrange(50)})"]
    body = [
        f"    {line}"
        for _ in range(rng.randrange(1, 3))
        for line in _statement(rng, names, depth + 1)
    ]
    if kind == 3:
        return [f"if {a} > {rng.randrange(100)}:", *body]
    if kind == 4:
        loop = _name(rng)
        names.append(loop)
        return [f"for {loop} in range({b} % {rng.randrange(2, 30)}):", *body]
    return [f"while {a} < {rng.randrange(100)}:", f"    {a} = {a} + {rng.randrange(1, 9)}", *body]


def synthetic_function(rng: random.Random) -> str:
    params = [_name(rng) for _ in range(rng.randrange(1, 4))]
    names = list(params)
    lines = [f"def main_solution({', '.join(params)}):", f'    """{_name(rng)} of the inputs."""']
    for _ in range(rng.randrange(4, 10)):
        lines += [f"    {line}" for line in _statement(rng, names)]
        if rng.random() < 0.3:
            lines.append(f"    # {_name(rng)} {_name(rng)}")
    lines.append(f"    return {rng.choice(names)}")
    return "\n".join(lines) + "\n"


def near_copy(code: str, rng: random.Random) -> str:
    """Every identifier renamed, comments and docstring changed, sometimes one line edited."""
    names = {t for t in re.findall(r"\w+", code) if "_" in t}
    names.discard("main_solution")
    for old in sorted(names, key=len, reverse=True):
        code = code.replace(old, f"r{rng.randrange(10**6)}_{old.split('_')[0][::-1]}")
    lines = [
        line.split("#")[0] + f"# {rng.choice(WORDS)}" if "#" in line else line
        for line in code.splitlines()
    ]
    lines[1] = '    """Another description entirely."""'
    if rng.random() < 0.5:
        at = rng.randrange(2, len(lines) - 1)
        lines.insert(at, lines[at][: len(lines[at]) - len(lines[at].lstrip())] + "pass")
    return "\n".join(lines) + "\n"


def corpus(n: int, copies: float, seed: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Shuffled (id, code) rows and, for every planted copy, the id of its original."""
    rng = random.Random(seed)
    planted = int(n * copies)
    originals = [(f"f{i}", synthetic_function(rng)) for i in range(n - planted)]
    copy_of = {}
    rows = list(originals)
    for j in range(planted):
        source_id, code = originals[rng.randrange(len(originals))]
        rows.append((f"c{j}", near_copy(code, rng)))
        copy_of[f"c{j}"] = source_id
    rng.shuffle(rows)
    return rows, copy_of


def frame(shard: str, rows: list[tuple[str, str]]) -> pl.DataFrame:
    n = len(rows)
    data = {column: [None] * n for column in polars_schema(UnifiedFunctionRecord)}
    data.update(
        function_id=[f for f, _ in rows],
        file_id=[f for f, _ in rows],
        shard=[shard] * n,
        status=["ok"] * n,
        reference_code=[c for _, c in rows],
    )
    return pl.DataFrame(data, schema=polars_schema(UnifiedFunctionRecord))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=100_000)
    parser.add_argument("--copies", type=float, default=0.1)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows, copy_of = corpus(args.functions, args.copies, args.seed)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    size = -(-len(rows) // args.shards)
    shards = [f"bench-{i:05d}" for i in range(args.shards)]
    found: list[tuple[str, str]] = []
    load_s = 0.0
    original_load = dedup.DedupIndexStore.load

    def timed_load(self, *a, **k):
        nonlocal load_s
        start = time.perf_counter()
        try:
            return original_load(self, *a, **k)
        finally:
            load_s += time.perf_counter() - start

    dedup.DedupIndexStore.load = timed_load
    with tempfile.TemporaryDirectory() as tmp:
        store = dedup.DedupIndexStore(Path(tmp) / "landing" / "_dedup")
        start = time.perf_counter()
        for i, shard in enumerate(shards):
            out = dedup.drop_near_duplicates(
                frame(shard, rows[i * size : (i + 1) * size]),
                store,
                shard,
                shards,
                threshold=args.threshold,
                num_perm=args.num_perm,
            )
            hits = out.filter(pl.col("status") == "near_duplicate")
            found += hits.select("function_id", "duplicate_of").rows()
        total_s = time.perf_counter() - start
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_start) / 1024

    # Right: the two share an original (a copy and its original, or two copies of one original).
    # Recall: every planted copy but the first kept member of its group must be detected.
    group = {fid: copy_of.get(fid, fid) for fid, _ in rows}
    right = sum(group[a] == group[b] for a, b in found)
    expected = len(copy_of)
    recall = min(right, expected) / expected if expected else 1.0
    precision = right / len(found) if found else 1.0
    print(
        f"functions={len(rows)} planted_copies={expected} shards={args.shards} "
        f"threshold={args.threshold} num_perm={args.num_perm}"
    )
    print(f"functions_per_s={len(rows) / total_s:.0f} total_s={total_s:.1f}")
    print(f"index_reload_s={load_s:.1f} share_of_time={load_s / total_s:.2f}")
    print(f"peak_rss_over_start_mib={peak_mib:.0f}")
    print(f"detected={len(found)} right={right} precision={precision:.3f}")
    print(f"recall={recall:.3f}")


if __name__ == "__main__":
    main()

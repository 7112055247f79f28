"""Benchmark: assemble codeio_dataset and codeio_pp_dataset from synthetic tables of 0.9 M,
1.8 M and 3.5 M tasks (the paper's full size), streaming to Parquet.

Synthetic inputs are written to Parquet in a temporary folder first (in chunks, so generating
them costs little memory); each size is then assembled in a fresh subprocess whose own peak RSS
is reported. Goal: cost linear in rows, peak memory under 2 GB at 3.5 M.

Usage: .venv/bin/python benchmarks/assembly.py [--sizes 900000,1800000,3500000]
       [--prompt-chars N] [--reply-chars N] [--rows-per-part N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

CHUNK = 100_000
# Small row groups, as a pipeline writing many shard partitions would produce; the reader
# decodes a row group at a time, so this bounds scan memory.
ROW_GROUP = 20_000
# Letters drawn at random (spaces frequent) compress about 2x, close to real prose; text that
# compresses 50x would make the Parquet reader prefetch far more rows than real data would.
ALPHABET = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz      ", dtype=np.uint8)


def _text(rng: np.random.Generator, rows: int, chars: int) -> pl.Series:
    """`rows` random JSON-safe ASCII strings of `chars` characters."""
    codes = rng.integers(0, len(ALPHABET), size=(rows, chars), dtype=np.uint8)
    raw = np.ascontiguousarray(ALPHABET[codes]).view(f"S{chars}").ravel()
    return pl.Series(raw).cast(pl.String)


def generate(folder: Path, n: int, prompt_chars: int, reply_chars: int) -> None:
    """Tasks, turn-0 replies and verdicts for n tasks; turn-1 ones for the ~49 % wrong at turn 0.

    Reply statuses: 1 % truncated, 0.5 % request_failed; 51 % of usable first answers correct.
    """
    for sub in ("tasks", "r0", "v0", "r1", "v1"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, n, CHUNK)):
        size = min(CHUNK, n - start)
        idx = pl.int_range(start, start + size, eager=True).alias("i")
        base = pl.DataFrame(idx).lazy()
        # Zero-padded ids: every table is written in task_id order, so assembly can merge-join.
        tid = "t" + pl.col("i").cast(pl.String).str.zfill(10)
        rng = np.random.default_rng(start)
        roll = (pl.col("i") * 2654435761) % 1000
        r0_status = (
            pl.when(roll < 10)
            .then(pl.lit("truncated"))
            .when(roll < 15)
            .then(pl.lit("request_failed"))
            .otherwise(pl.lit("ok"))
        )
        correct = roll >= 15 + 490
        frame = base.with_columns(
            task_id=tid,
            prompt=_text(rng, size, prompt_chars),
            r0_status=r0_status,
            correct=correct,
            reply=_text(rng, size, reply_chars),
            reply1=_text(rng, size, reply_chars),
        ).collect()
        name = f"part{part:04d}.parquet"
        frame.select(
            "task_id",
            function_id=pl.format("f{}", pl.col("i") // 6),
            shard=pl.format("s{}", pl.col("i") // 3000),
            kind=pl.when(pl.col("i") % 2 == 0)
            .then(pl.lit("output_prediction"))
            .otherwise(pl.lit("input_prediction")),
            pair_index=(pl.col("i") % 10),
            given=pl.lit('{"n": 5}'),
            expected=pl.lit("25"),
            prompt="prompt",
            status=pl.lit("ok"),
            detail=pl.lit(None, dtype=pl.String),
        ).write_parquet(folder / "tasks" / name, row_group_size=ROW_GROUP)
        msgs0 = pl.concat_str(
            pl.lit('[{"role": "user", "content": "'), pl.col("prompt"), pl.lit('"}]')
        )
        _responses(frame, 0, msgs0, pl.col("r0_status"), pl.col("reply")).write_parquet(
            folder / "r0" / name, row_group_size=ROW_GROUP
        )
        v0_status = (
            pl.when(pl.col("r0_status") != "ok")
            .then(pl.col("r0_status"))
            .when(pl.col("correct"))
            .then(pl.lit("correct"))
            .otherwise(pl.lit("wrong"))
        )
        _verdicts(frame, 0, v0_status).write_parquet(folder / "v0" / name, row_group_size=ROW_GROUP)
        wrong = frame.filter((pl.col("r0_status") == "ok") & ~pl.col("correct"))
        feedback = "Your predicted output is not what the code returns. Please solve it again."
        msgs1 = pl.concat_str(
            pl.lit('[{"role": "user", "content": "'),
            pl.col("prompt"),
            pl.lit('"}, {"role": "assistant", "content": "'),
            pl.col("reply"),
            pl.lit(f'"}}, {{"role": "user", "content": "{feedback}"}}]'),
        )
        roll1 = (pl.col("i") * 40503) % 100
        r1_status = pl.when(roll1 < 2).then(pl.lit("truncated")).otherwise(pl.lit("ok"))
        _responses(wrong, 1, msgs1, r1_status, pl.col("reply1")).write_parquet(
            folder / "r1" / name, row_group_size=ROW_GROUP
        )
        v1_status = (
            pl.when(roll1 < 2)
            .then(pl.lit("truncated"))
            .when(roll1 < 30)
            .then(pl.lit("correct"))
            .otherwise(pl.lit("wrong"))
        )
        _verdicts(wrong, 1, v1_status).write_parquet(folder / "v1" / name, row_group_size=ROW_GROUP)


def _responses(frame, turn, messages, status, content) -> pl.DataFrame:
    return frame.select(
        "task_id",
        shard=pl.lit("s"),
        turn=pl.lit(turn, dtype=pl.Int64),
        messages=messages,
        content=pl.when(status == "request_failed").then(None).otherwise(content),
        status=status,
        finish_reason=pl.lit("stop"),
        error=pl.lit(None, dtype=pl.String),
        prompt_tokens=pl.lit(400, dtype=pl.Int64),
        completion_tokens=pl.lit(600, dtype=pl.Int64),
        cost_usd=pl.lit(0.0),
        cached=pl.lit(False),
        request_hash=pl.lit("h"),
        model=pl.lit("m"),
    )


def _verdicts(frame, turn, status) -> pl.DataFrame:
    return frame.select(
        "task_id",
        shard=pl.lit("s"),
        turn=pl.lit(turn, dtype=pl.Int64),
        kind=pl.lit("output_prediction"),
        status=status,
        answer=pl.lit("3"),
        actual=pl.lit(None, dtype=pl.String),
        feedback=pl.when(status == "correct")
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.lit("Your predicted output 3 is not what the code returns.")),
    )


def child(folder: Path, rows_per_part: int) -> None:
    """Assemble both datasets from `folder` (in hash parts of about `rows_per_part` tasks, one
    Parquet file each), print timings and this process's peak RSS."""
    from codeio_dagster.assembly import assemble_codeio, assemble_codeio_pp

    def scan(sub: str) -> pl.LazyFrame:
        return pl.scan_parquet(folder / sub / "*.parquet")

    n = scan("tasks").select(pl.len()).collect().item()
    parts = max(1, -(-n // rows_per_part))
    timings = {}
    for name in ("codeio", "codeio_pp"):
        (folder / name).mkdir()
        start = time.perf_counter()
        for i in range(parts):
            if name == "codeio":
                plan = assemble_codeio(scan("tasks"), scan("r0"), scan("v0"), part=(i, parts))
            else:
                plan = assemble_codeio_pp(
                    scan("tasks"),
                    [scan("r0"), scan("r1")],
                    [scan("v0"), scan("v1")],
                    part=(i, parts),
                )
            plan.sink_parquet(folder / name / f"part{i:03d}.parquet", row_group_size=ROW_GROUP)
        timings[f"{name}_s"] = time.perf_counter() - start
    rows = {
        name: pl.scan_parquet(folder / name / "*.parquet").select(pl.len()).collect().item()
        for name in ("codeio", "codeio_pp")
    }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**timings, "peak_mb": peak_mb, "parts": parts, **rows}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="900000,1800000,3500000")
    parser.add_argument("--prompt-chars", type=int, default=600)
    parser.add_argument("--reply-chars", type=int, default=800)
    parser.add_argument("--keep", type=Path, help="write inputs/outputs here and keep them")
    parser.add_argument(
        "--rows-per-part",
        type=int,
        default=450_000,
        help="assemble in hash parts of about this many tasks (bounds join memory)",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows_per_part)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"text sizes: prompt ~{args.prompt_chars} chars, reply ~{args.reply_chars} chars "
        "(sized down from ~1.5 KB / ~2 KB so 3.5 M rows fit the time and disk of a 2-core box; "
        "the per-row cost ratio is what tests linearity)",
        flush=True,
    )
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="codeio-assembly-"))
    results = []
    try:
        for n in sizes:
            folder = root / f"n{n}"
            shutil.rmtree(folder, ignore_errors=True)
            t0 = time.perf_counter()
            generate(folder, n, args.prompt_chars, args.reply_chars)
            gen_s = time.perf_counter() - t0
            input_mb = sum(p.stat().st_size for p in folder.rglob("*.parquet")) / 2**20
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(folder),
                    "--rows-per-part",
                    str(args.rows_per_part),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            total = r["codeio_s"] + r["codeio_pp_s"]
            results.append((n, total, r["peak_mb"]))
            print(
                f"n={n:>9,}  generate {gen_s:6.1f} s ({input_mb:,.0f} MB parquet)  "
                f"codeio {r['codeio_s']:6.1f} s ({r['codeio']:,} rows)  "
                f"codeio_pp {r['codeio_pp_s']:6.1f} s ({r['codeio_pp']:,} rows)  "
                f"parts {r['parts']}  us/row {total / n * 1e6:6.2f}  peak RSS {r['peak_mb']:,.0f} MB",
                flush=True,
            )
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    n0, t0_, _ = results[0]
    for n, t, _ in results[1:]:
        print(f"per-row cost ratio n={n:,} vs n={n0:,}: {(t / n) / (t0_ / n0):.2f} (1.00 = linear)")
    print(f"peak_rss_mb={results[-1][2]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

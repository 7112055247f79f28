"""Benchmark: the cost of reading one poisoned reply grows linearly with its length.

The balanced-object scan and the fenced-block reader (shared with the refactor parser) run on
hostile replies of n and 10 n characters, side by side in one run; a linear reader takes about
10x as long on the longer one, a quadratic one about 100x (before the fix, 20k `{` took 27 s
and a fence line of 20k spaces ending in a backtick 10 s). Then the whole extraction's cost at
its input bound, which is the most any one reply can cost.

Usage: .venv/bin/python benchmarks/answers.py [--n 100000]
"""

from __future__ import annotations

import argparse
import time

from codeio_dagster.answers import MAX_REPLY_CHARS, extract_answer, scan_objects
from codeio_dagster.markdown import code_blocks

# Each reply is about n characters long.
CASES = {
    "open braces": lambda n: "{" * n,
    "brace-quote pairs": lambda n: '{"' * (n // 2),
    "brace-apostrophe": lambda n: "{'" * (n // 2) + "\n",
    "escaped quotes": lambda n: '{\\"' * (n // 3),
    "fence line of spaces": lambda n: "```" + " " * n + "`\n{}",
    "deep fenced json": lambda n: "```json\n" + "[" * (n // 2) + "]" * (n // 2) + "\n```",
    "many small objects": lambda n: "{a}" * (n // 3),
}


def seconds(fn, text: str) -> float:
    """Best of three, so another process on the machine distorts the ratio less."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    readers = {
        "scan_objects": scan_objects,  # the balanced-object scan (was quadratic)
        "code_blocks": code_blocks,  # the fence reader shared with the refactor parser
    }
    for reader, fn in readers.items():
        for case, make in CASES.items():
            small, large = seconds(fn, make(n)), seconds(fn, make(10 * n))
            print(
                f"{reader:14s} {case:22s} n={n}: {small * 1e3:8.2f} ms  "
                f"10n: {large * 1e3:8.2f} ms  ratio {large / max(small, 1e-9):5.1f} "
                "(linear ~10, quadratic ~100)"
            )
    # Whatever its length, extraction reads at most MAX_REPLY_CHARS: this is its worst cost.
    for case, make in CASES.items():
        cost = seconds(lambda t: extract_answer(t, "output"), make(MAX_REPLY_CHARS - 20))
        print(
            f"extract_answer {case:22s} at the {MAX_REPLY_CHARS}-char bound: {cost * 1e3:8.2f} ms"
        )


if __name__ == "__main__":
    main()

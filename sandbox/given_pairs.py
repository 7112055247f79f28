"""I/O pairs a function came with (an imported function without a generator), verified by
running each input again in the sandbox: a pair whose output does not come out the same is
dropped with its reason, and the function keeps the pairs that reproduce.

The checks are those generated pairs pass (an object input, the size limits, no duplicate input,
no None output), and each call runs in its own fork, as a fresh process would. A reproduced pair
has been computed twice, by whoever stored it and here, so it needs no second re-run.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from codeio_dagster.sandbox.cache import ResultCache
from codeio_dagster.sandbox.executor import Executor
from codeio_dagster.sandbox.iopairs import IOPair, IOPairOutcome
from codeio_dagster.sandbox.jobs import Job
from codeio_dagster.sandbox.settings import IOPairLimits
from codeio_dagster.sandbox.values import json_stats, outputs_equal, read_json


class GivenPairs(BaseModel):
    """A function's code (defining main_solution) and the pairs it came with."""

    model_config = ConfigDict(extra="forbid")

    id: str
    code: str
    pairs: list[IOPair]


# A job's status -> the per-pair counter it adds to, and the function's status when it is
# what dropped most of its pairs.
_RUN_DROPS = {
    "exception": "exception",
    "timeout": "timeout",
    "memory": "memory",
}
_FUNCTION_STATUS = {
    "not_reproduced": "not_reproduced",
    "exception": "code_error",
    "timeout": "timeout",
    "memory": "memory",
}


def _too_large(value: object, text: str, limits: IOPairLimits) -> bool:
    items, longest, nonfinite = json_stats(value)
    return (
        len(text.encode("utf-8")) > limits.max_bytes
        or items > limits.max_items
        or longest > limits.max_str_len
        or nonfinite
    )


def _screen(pairs: list[IOPair], limits: IOPairLimits, drop) -> list[tuple[int, dict]]:
    """(index, input) of the pairs worth running; the others dropped through `drop`."""
    runnable, seen = [], set()
    for i, pair in enumerate(pairs):
        try:
            # Stored pairs come from a dataset: text that is not JSON, or nested deeper than
            # canonical JSON goes, is one pair's drop, never the stage's failure.
            value, output = read_json(pair.input), read_json(pair.output)
        except ValueError as exc:
            drop("invalid_pair", i, f"{exc}: {pair.input[:100]} -> {pair.output[:100]}")
            continue
        if not isinstance(value, dict):
            drop("invalid_input", i, f"input is not a JSON object: {pair.input[:200]}")
        elif _too_large(value, pair.input, limits):
            drop("too_large_input", i, f"input over the size limits: {pair.input[:200]}")
        elif output is None:
            drop("none_output", i, "the stored output is null")
        elif _too_large(output, pair.output, limits):
            drop("too_large_output", i, f"output over the size limits: {pair.output[:200]}")
        elif pair.input in seen:
            drop("duplicate_input", i, f"input given twice: {pair.input[:200]}")
        else:
            seen.add(pair.input)
            runnable.append((i, value))
    return runnable


def verify_given_pairs(
    executor: Executor,
    functions: Sequence[GivenPairs],
    limits: IOPairLimits | None = None,
    cache: ResultCache | None = None,
) -> list[IOPairOutcome]:
    """One outcome per function: the pairs that reproduce (at most `max_pairs`), the counts of
    those dropped by reason (`dropped_not_reproduced`, ...), and the first drop's detail."""
    limits = limits or IOPairLimits()
    outcomes, plans = [], []
    for fn in functions:
        counts = {"given_pairs": len(fn.pairs), "main_solution_calls": 0}
        errors: dict[str, tuple[int, str]] = {}  # reason -> its first pair and detail

        def drop(reason: str, i: int, detail: str, counts=counts, errors=errors) -> None:
            counts[f"dropped_{reason}"] = counts.get(f"dropped_{reason}", 0) + 1
            if reason not in errors or i < errors[reason][0]:
                errors[reason] = (i, f"pair {i}: {reason}: {detail}")

        runnable = _screen(fn.pairs, limits, drop)
        counts["main_solution_calls"] = len(runnable)
        outcomes.append((fn, counts, errors, drop))
        plans.append(runnable)
    jobs = [
        Job(id=f"{fn.id}#{i}", code=fn.code, input=value)
        for (fn, *_), runnable in zip(outcomes, plans, strict=True)
        for i, value in runnable
    ]
    results = iter(executor.run(jobs, cache=cache))
    finished = []
    for (fn, counts, errors, drop), runnable in zip(outcomes, plans, strict=True):
        kept: list[IOPair] = []
        for i, _ in runnable:
            got = next(results)
            stored = fn.pairs[i]
            if got.status != "ok" or got.output is None:
                reason = _RUN_DROPS.get(got.status, "invalid_output")
                drop(reason, i, f"input {stored.input[:200]} gave {got.status}: {got.error}")
            elif not outputs_equal(read_json(got.output), read_json(stored.output)):
                drop(
                    "not_reproduced",
                    i,
                    f"input {stored.input[:200]} gave {got.output[:200]}, "
                    f"stored {stored.output[:200]}",
                )
            elif len(kept) >= limits.max_pairs:
                counts["dropped_over_max_pairs"] = counts.get("dropped_over_max_pairs", 0) + 1
            else:
                kept.append(IOPair(input=stored.input, output=got.output))
        counts["reproduced"] = len(kept)
        status = "ok"
        if len(kept) < limits.min_pairs:
            drops = {
                k.removeprefix("dropped_"): n for k, n in counts.items() if k[:8] == "dropped_"
            }
            worst = max(drops, key=drops.get) if drops else None
            status = _FUNCTION_STATUS.get(worst, "too_few_pairs")
        finished.append(
            IOPairOutcome(
                function_id=fn.id,
                status=status,
                pairs=kept,
                counts=counts,
                # One example per reason, the most frequent reason first.
                error="; ".join(
                    text
                    for _, (_, text) in sorted(
                        errors.items(), key=lambda kv: (-counts[f"dropped_{kv[0]}"], kv[1][0])
                    )
                )[:4000]
                or None,
            )
        )
    return finished

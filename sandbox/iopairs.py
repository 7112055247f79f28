"""CodeI/O's I/O-pair generation with a determinism check, and input-prediction verification."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.sandbox.cache import ResultCache
from codeio_dagster.sandbox.executor import Executor, PoolKey
from codeio_dagster.sandbox.jobs import result_from_reply
from codeio_dagster.sandbox.settings import IOPairLimits
from codeio_dagster.sandbox.values import json_stats, outputs_equal, read_json

_ROUND_TRIP_SLACK_S = 2.0


class FunctionSpec(BaseModel):
    """A unified-format function: code defining main_solution(**kwargs) and input_generator()."""

    model_config = ConfigDict(extra="forbid")

    id: str
    code: str


def combine_for_sandbox(reference_code: str, input_generator: str) -> str:
    """One module defining both `main_solution` and `input_generator` (generator last, so its
    definition wins if the reference code also defines one): the `code` of a FunctionSpec."""
    return f"{reference_code.rstrip()}\n\n\n# --- input generator ---\n{input_generator.strip()}\n"


class IOPair(BaseModel):
    """One input (kwargs object) and its output, both canonical JSON text."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: str


class IOPairOutcome(BaseModel):
    """What I/O-pair generation made of one function; status is "ok" or why it was dropped."""

    model_config = ConfigDict(extra="forbid")

    function_id: str
    status: str
    pairs: list[IOPair] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    conversions: list[str] = Field(default_factory=list)
    duration_ms: float = 0.0


_DROP_FOR_REPLY = {
    "timeout": "timeout",
    "memory": "memory",
    "output_limit": "invalid_output",
    "invalid_output": "invalid_output",
    "killed": "killed",
    "exception": "code_error",
}


def _drop_reason(counts: dict[str, int]) -> str:
    calls = counts.get("generator_calls", 0)
    if calls and counts.get("generator_errors", 0) == calls:
        return "generator_error"
    solved = counts.get("main_solution_calls", 0)
    if solved and counts.get("dropped_exception", 0) == solved:
        return "code_error"
    ran = calls - counts.get("generator_errors", 0)
    for key, reason in (("dropped_timeout", "timeout"), ("dropped_memory", "memory")):
        if ran and counts.get(key, 0) >= max(1, ran // 2):
            return reason
    # Outputs too deep, too large or of no JSON type are the function's, not the draws'.
    for key, reason in (
        ("dropped_invalid_output", "invalid_output"),
        ("dropped_too_large_output", "too_large_output"),
    ):
        if solved and counts.get(key, 0) >= max(1, solved // 2):
            return reason
    return "too_few_pairs"


def _drop_detail(status: str, out: IOPairOutcome, reply: dict[str, Any], minimum: int) -> str:
    """Why a function kept fewer than `minimum` pairs, in the words of its reply's errors."""
    own = {
        "code_error": reply.get("call_error"),
        "generator_error": reply.get("generator_error"),
        "invalid_output": reply.get("output_error"),
        "too_large_output": reply.get("output_error"),
    }.get(status)
    if own:
        return str(own)[:4000]
    drops = sorted(
        ((n, k) for k, n in out.counts.items() if k.startswith("dropped_") and n), reverse=True
    )
    summary = ", ".join(f"{k} {n}" for n, k in drops[:4]) or "no draw was dropped"
    text = (
        f"{len(out.pairs)} pair(s) from {out.counts.get('generator_calls', 0)} draws, fewer "
        f"than min_pairs={minimum}: {summary}"
    )
    if out.error:
        text += f"; first error: {out.error}"
    return text[:4000]


def generate_io_pairs(
    executor: Executor,
    functions: Sequence[FunctionSpec],
    limits: IOPairLimits | None = None,
    seed: int = 0,
    cache: ResultCache | None = None,
) -> list[IOPairOutcome]:
    """Draw inputs, run main_solution, keep small new pairs, then re-run them all to make sure.

    Each function's loop runs in one jailed job (CodeI/O's 60 s budget covers the whole loop);
    every generator draw is seeded from (seed, function id, draw index) for `random` and
    `numpy.random`, while main_solution itself sees fresh entropy, so a function that uses
    randomness disagrees with its recheck. main_solution is called on the JSON round trip of the
    generated input, exactly what later verification will do with the stored pair. Determinism
    is a property of the function: one pair that a re-run does not reproduce drops them all.
    """
    limits = limits or IOPairLimits()
    settings = executor.settings
    wall = limits.time_budget_s + settings.timeout_s + _ROUND_TRIP_SLACK_S
    lim = limits.model_dump(
        include={
            "max_generator_calls",
            "max_pairs",
            "max_bytes",
            "max_items",
            "max_str_len",
            "stop_after_failures",
        }
    )
    lim["time_budget_s"] = limits.time_budget_s
    requests = []
    for fn in functions:
        req = executor.base_request(wall)
        req.update(
            kind="iopairs",
            id=fn.id,
            code=fn.code,
            limits=lim,
            seed_key=f"{seed}:{fn.id}",
            call_timeout_s=settings.timeout_s,
            cpu_s=math.ceil(wall) + 1,
            max_output_bytes=max(
                settings.max_output_bytes, 4 * limits.max_pairs * limits.max_bytes + 65536
            ),
        )
        requests.append((None, req))
    recheck = _Recheck(executor, functions) if limits.determinism_check else None
    jails = recheck.jails if recheck is not None else {}
    # Starting a heavy jail costs 0.15 s (numpy) to 1 s (scipy) of CPU: the jobs of a heavy
    # pool that are at most one slot's share of the batch run in one jail, while the other
    # slots take the rest (and the re-runs, which join the batch).
    pools = Counter(executor.pool_modules(fn.code) for fn in functions)
    for modules, count in pools.items():
        if modules and count * settings.worker_count() <= len(functions):
            jails[(settings.hash_seed, modules)] = 1
    outcomes: list[IOPairOutcome | None] = [None] * len(functions)

    def generated(i: int, reply: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
        # The re-run of a function's pairs joins the batch as soon as they are known, so the
        # jails re-run early functions while a slow one is still generating.
        if i >= len(functions):
            return []
        out = outcomes[i] = _generated(functions[i], reply, limits)
        return recheck.requests_for(i, out) if recheck is not None else []

    replies = executor.run_requests(
        requests,
        cache=cache,
        jails=jails,
        follow_up=generated,
        expected_ms=recheck.expected_ms if recheck is not None else None,
    )
    generation = replies[: len(functions)]
    done = [
        out if out is not None else _generated(fn, reply, limits)
        for fn, out, reply in zip(functions, outcomes, generation, strict=True)
    ]
    if recheck is not None:
        recheck.judge(done, replies[len(functions) :])
    return done


def _generated(fn: FunctionSpec, reply: dict[str, Any], limits: IOPairLimits) -> IOPairOutcome:
    """The outcome of a function's generation job, before its re-run."""
    out = _outcome(fn, reply, limits)
    out.duration_ms = _duration(reply)
    if out.status == "ok" and len(out.pairs) < limits.min_pairs:
        out.status = _drop_reason(out.counts)
        out.error = _drop_detail(out.status, out, reply, limits.min_pairs)
    return out


def _duration(reply: dict[str, Any]) -> float:
    try:
        return float(reply.get("duration_ms") or 0.0)
    except (TypeError, ValueError, OverflowError):
        return 0.0


def _checked_pair(pair: IOPair, limits: IOPairLimits) -> None:
    """ValueError unless the pair is one the fork-server could have kept under these limits."""
    for side, text in (("input", pair.input), ("output", pair.output)):
        value = read_json(text)
        size = len(text.encode("utf-8"))
        items, longest, nonfinite = json_stats(value)
        if side == "input" and not isinstance(value, dict):
            raise ValueError("pair input is not a JSON object")
        if size > limits.max_bytes or items > limits.max_items or longest > limits.max_str_len:
            raise ValueError(
                f"pair {side} over the limits ({size} bytes, {items} items, string of {longest})"
            )
        if nonfinite:
            raise ValueError(f"pair {side} holds NaN or infinity")


def _outcome(fn: FunctionSpec, reply: dict[str, Any], limits: IOPairLimits) -> IOPairOutcome:
    status = reply.get("status", "killed")
    if status != "ok":
        return IOPairOutcome(
            function_id=fn.id,
            status=_DROP_FOR_REPLY.get(str(status), "invalid_output"),
            error=None if reply.get("error") is None else str(reply.get("error"))[:4000],
        )
    # Generated code shares the result pipe, so the reply's shape is checked, not assumed.
    try:
        counts = {str(k): int(v) for k, v in reply["counts"].items()}
        pairs = [IOPair(input=i, output=o) for i, o in reply["pairs"]]
        if len(pairs) > limits.max_pairs:
            raise ValueError(f"{len(pairs)} pairs, more than max_pairs={limits.max_pairs}")
        for pair in pairs:
            _checked_pair(pair, limits)
        conversions = [str(c) for c in reply.get("conversions", [])]
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        return IOPairOutcome(
            function_id=fn.id, status="invalid_output", error=f"malformed reply: {exc}"[:500]
        )
    counts["dropped_nondeterministic"] = 0
    counts["stopped_by_wall_clock"] = int(bool(reply.get("stopped_by_wall_clock")))
    error = reply.get("error")
    return IOPairOutcome(
        function_id=fn.id,
        status="ok",
        pairs=pairs,
        counts=counts,
        error=None if error is None else str(error)[:4000],
        conversions=conversions,
    )


# A function whose calls are slow is re-run in chunks of about this much work, so that its
# calls spread over the workers instead of queueing on one; a fast function is one job.
_CHUNK_MS = 1000.0


def _chunks(out: IOPairOutcome) -> list[tuple[int, int]]:
    """(start, end) pair ranges to re-run as one job each, from the generation's duration."""
    n = len(out.pairs)
    per_pair = out.duration_ms / max(n, 1)  # generous: the generation drew and dropped too
    size = max(1, min(n, int(_CHUNK_MS // per_pair) if per_pair > 0 else n))
    return [(i, min(i + size, n)) for i in range(0, n, size)]


class _Recheck:
    """The determinism re-run: every kept pair again, each call in a fresh process under another
    hash seed, one job per function (per chunk of a slow one); a function with any pair that
    does not come out the same loses all its pairs.

    Its requests join the generation's batch as each function's generation ends. A slow
    function's chunks spread over the jails instead of queueing on one. Chunks are sized by the
    generation's duration, which comes with its (cached) reply, so a rerun splits its requests
    the same way and finds them in the cache.
    """

    def __init__(self, executor: Executor, functions: Sequence[FunctionSpec]):
        self.executor = executor
        self.functions = functions
        self.seed = (executor.settings.hash_seed + 1) % (1 << 32)
        # (function index, first pair, end) of each re-run request, in the order sent.
        self.jobs: list[tuple[int, int, int]] = []
        # Under a second of a heavy pool's work: a second jail of that pool for this seed could
        # save at most half of it, and starting one costs 0.15 s (numpy) to 1 s (scipy) of CPU.
        # Lifted once the pool's re-run work known so far passes a second.
        self.modules = [executor.pool_modules(fn.code) for fn in functions]
        self.jails: dict[PoolKey, int] = {(self.seed, m): 1 for m in set(self.modules) if m}
        self.heavy_ms: dict[frozenset[str], float] = {}
        # A re-run request's expected milliseconds, by its id: its share of the first pass's.
        self.expected: dict[str, float] = {}

    def requests_for(self, i: int, out: IOPairOutcome) -> list[tuple[int | None, dict[str, Any]]]:
        if out.status != "ok":
            return []
        settings = self.executor.settings
        code = self.functions[i].code
        call_wall = settings.timeout_s
        requests = []
        for start, end in _chunks(out):
            pairs = out.pairs[start:end]
            n = len(pairs)
            # Every call gets the wall clock a single call gets, plus a fork's worth of slack.
            req = self.executor.base_request(n * (call_wall + 0.5) + _ROUND_TRIP_SLACK_S)
            req.update(
                kind="recheck",
                id=f"{out.function_id}#{start}",
                code=code,
                call="main_solution",
                inputs=[json.loads(p.input) for p in pairs],
                expected=[p.output for p in pairs],
                call_timeout_s=call_wall,
                call_cpu_s=math.ceil(call_wall) + 1,
                call_max_output_bytes=settings.max_output_bytes,
                cpu_s=math.ceil(n * (call_wall + 1)) + 1,
                max_output_bytes=n * (settings.max_output_bytes + 4096) + 65536,
            )
            requests.append((self.seed, req))
            self.jobs.append((i, start, end))
            self.expected[req["id"]] = out.duration_ms * n / max(len(out.pairs), 1)
        modules = self.modules[i]
        if modules:
            self.heavy_ms[modules] = self.heavy_ms.get(modules, 0.0) + out.duration_ms
            if self.heavy_ms[modules] >= _CHUNK_MS:
                self.jails.pop((self.seed, modules), None)
        return requests

    def expected_ms(self, req: dict[str, Any]) -> float | None:
        """How long a request of this batch is expected to run: a re-run about as long as its
        pairs took in the first pass; a first pass is unknown."""
        return self.expected.get(req["id"]) if req.get("kind") == "recheck" else None

    def judge(self, outcomes: list[IOPairOutcome], replies: Sequence[dict[str, Any]]) -> None:
        found: dict[int, list[tuple[int, tuple[str, str]]]] = {}
        for (oi, start, end), reply in zip(self.jobs, replies, strict=True):
            verdict = _recheck_verdict(outcomes[oi], start, end, reply)
            if verdict is not None:
                found.setdefault(oi, []).append((start, verdict))
        for oi, verdicts in found.items():
            # The first failing pair in the function's order speaks for it.
            _drop_function(outcomes[oi], *min(verdicts)[1])


def _drop_function(out: IOPairOutcome, status: str, error: str) -> None:
    """The re-run did not reproduce every pair: the function keeps none of them."""
    out.counts["dropped_nondeterministic"] = len(out.pairs) if status == "nondeterministic" else 0
    out.counts[f"recheck_{status}"] = 1
    out.pairs = []
    out.status = status
    out.error = f"determinism re-run: {error}"[:4000]


def _recheck_verdict(
    out: IOPairOutcome, start: int, end: int, reply: dict[str, Any]
) -> tuple[str, str] | None:
    """None if pairs [start, end) were all reproduced, else (status, error) for the function."""
    status = reply.get("status")
    if status != "ok":
        reason = _DROP_FOR_REPLY.get(str(status), "invalid_output")
        return reason, f"{status}: {reply.get('error')}"
    pairs = out.pairs[start:end]
    results = reply.get("results")
    if not isinstance(results, list) or len(results) > len(pairs):
        return "invalid_output", "malformed re-run reply"
    for i, (pair, result) in enumerate(zip(pairs, results, strict=False), start):
        got = result_from_reply(
            f"{out.function_id}#{i}", result if isinstance(result, dict) else {}
        )
        if got.status != "ok" or got.output is None:
            # The re-run's own failure, not a verdict on determinism.
            reason = _DROP_FOR_REPLY.get(got.status, "invalid_output")
            return reason, f"input {pair.input[:200]} gave {got.status}: {got.error}"
        if not outputs_equal(read_json(got.output), read_json(pair.output)):
            return (
                "nondeterministic",
                f"input {pair.input[:200]} gave {got.output[:200]}, first run {pair.output[:200]}",
            )
    if len(results) < len(pairs):
        return "invalid_output", "the re-run stopped before every pair was checked"
    return None

"""CodeI/O's I/O-pair generation with a determinism check, and input-prediction verification."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codeio_dagster.sandbox.executor import Executor, result_from_reply
from codeio_dagster.sandbox.settings import IOPairLimits
from codeio_dagster.sandbox.values import outputs_equal

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
    ran = calls - counts.get("generator_errors", 0)
    for key, reason in (("dropped_timeout", "timeout"), ("dropped_memory", "memory")):
        if ran and counts.get(key, 0) >= max(1, ran // 2):
            return reason
    return "too_few_pairs"


def generate_io_pairs(
    executor: Executor,
    functions: Sequence[FunctionSpec],
    limits: IOPairLimits | None = None,
    seed: int = 0,
) -> list[IOPairOutcome]:
    """Draw inputs, run main_solution, keep small new pairs, then drop irreproducible ones.

    Each function's loop runs in one jailed job (CodeI/O's 60 s budget covers the whole loop);
    every generator draw is seeded from (seed, function id, draw index) for `random` and
    `numpy.random`, while main_solution itself sees fresh entropy, so a function that uses
    randomness disagrees with its recheck. main_solution is called on the JSON round trip of the
    generated input, exactly what later verification will do with the stored pair.
    """
    limits = limits or IOPairLimits()
    settings = executor.settings
    wall = limits.time_budget_s + settings.timeout_s + _ROUND_TRIP_SLACK_S
    lim = limits.model_dump(
        include={"max_generator_calls", "max_pairs", "max_bytes", "max_items", "max_str_len"}
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
    replies = executor.run_requests(requests)
    outcomes = [_outcome(fn, reply) for fn, reply in zip(functions, replies, strict=True)]
    if limits.determinism_check:
        _recheck(executor, functions, outcomes, limits)
    for out in outcomes:
        if out.status == "ok" and len(out.pairs) < limits.min_pairs:
            out.status = _drop_reason(out.counts)
    return outcomes


def _outcome(fn: FunctionSpec, reply: dict[str, Any]) -> IOPairOutcome:
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
        for pair in pairs:
            if not isinstance(json.loads(pair.input), dict):
                raise ValueError("pair input is not a JSON object")
            json.loads(pair.output)
        conversions = [str(c) for c in reply.get("conversions", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return IOPairOutcome(
            function_id=fn.id, status="invalid_output", error=f"malformed reply: {exc}"[:500]
        )
    counts["dropped_nondeterministic"] = 0
    return IOPairOutcome(
        function_id=fn.id,
        status="ok",
        pairs=pairs,
        counts=counts,
        error=None if reply.get("error") is None else str(reply.get("error"))[:4000],
        conversions=conversions,
    )


def _recheck(
    executor: Executor,
    functions: Sequence[FunctionSpec],
    outcomes: list[IOPairOutcome],
    limits: IOPairLimits,
) -> None:
    """Recompute every kept pair in fresh processes under another hash seed; drop mismatches."""
    other_seed = (executor.settings.hash_seed + 1) % (1 << 32)
    code_of = {fn.id: fn.code for fn in functions}
    requests = []
    where = []
    for oi, out in enumerate(outcomes):
        if out.status != "ok" or len(out.pairs) < limits.min_pairs:
            continue
        for pi, pair in enumerate(out.pairs):
            req = executor.base_request(None)
            req.update(
                kind="call",
                id=f"{out.function_id}#{pi}",
                code=code_of[out.function_id],
                call="main_solution",
                input=json.loads(pair.input),
            )
            requests.append((other_seed, req))
            where.append((oi, pi))
    replies = executor.run_requests(requests)
    drop: dict[int, set[int]] = {}
    for (oi, pi), reply in zip(where, replies, strict=True):
        same = reply.get("status") == "ok" and reply.get("output") == outcomes[oi].pairs[pi].output
        if not same:
            drop.setdefault(oi, set()).add(pi)
    for oi, bad in drop.items():
        out = outcomes[oi]
        out.pairs = [p for i, p in enumerate(out.pairs) if i not in bad]
        out.counts["dropped_nondeterministic"] = len(bad)
        if len(out.pairs) < limits.min_pairs:
            out.status = "nondeterministic"


class InputCheck(BaseModel):
    """A predicted input to verify by running the reference code on it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    code: str
    call: str = "main_solution"
    predicted_input: Any
    expected_output: str


class InputVerdict(BaseModel):
    """Whether a predicted input reproduces the expected output."""

    model_config = ConfigDict(extra="forbid")

    id: str
    status: Literal["correct", "wrong", "exec_error", "timeout"]
    actual_output: str | None = None
    error: str | None = None


def check_input_predictions(executor: Executor, checks: Sequence[InputCheck]) -> list[InputVerdict]:
    """Run call(**predicted_input) for each check and compare with the expected output."""
    verdicts: list[InputVerdict | None] = [None] * len(checks)
    requests = []
    where = []
    for i, check in enumerate(checks):
        try:
            json.loads(check.expected_output)
        except ValueError as exc:
            raise ValueError(
                f"InputCheck {check.id!r}: expected_output is not JSON text ({exc})"
            ) from None
        if not isinstance(check.predicted_input, dict):
            verdicts[i] = InputVerdict(
                id=check.id,
                status="exec_error",
                error="predicted input must be a JSON object of keyword arguments, got "
                f"{type(check.predicted_input).__name__}",
            )
            continue
        req = executor.base_request(None)
        req.update(
            kind="call", id=check.id, code=check.code, call=check.call, input=check.predicted_input
        )
        requests.append((None, req))
        where.append(i)
    replies = executor.run_requests(requests)
    for i, reply in zip(where, replies, strict=True):
        check = checks[i]
        # The reply crossed a pipe the predicted input's run could also write to.
        result = result_from_reply(check.id, reply)
        if result.status == "ok" and result.output is not None:
            ok = outputs_equal(json.loads(result.output), json.loads(check.expected_output))
            verdicts[i] = InputVerdict(
                id=check.id, status="correct" if ok else "wrong", actual_output=result.output
            )
        else:
            verdicts[i] = InputVerdict(
                id=check.id,
                status="timeout" if result.status == "timeout" else "exec_error",
                error=f"{result.status}: {result.error}",
            )
    return [v for v in verdicts if v is not None]

"""Records that flow between stages, each with a matching polars schema.

JSON values (inputs, outputs, answers) travel as canonical JSON text so that every table has a
fixed schema whatever the functions return. A row that drops out keeps its `status` (a reason
code), so the funnel from raw files to samples is data, not a log line.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_origin

import polars as pl
from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- stage records ---------------------------------------------------------------------------

RawStatus = Literal[
    "ok",
    "duplicate",
    "binary",
    "bad_encoding",
    "oversized",
    "empty",
    "bad_row",
    "outside_root",
    "unreadable",
]


class RawFileRecord(Record):
    """One raw file of a shard, as landed by the sensor and classified by `raw_code`."""

    file_id: str  # sha256 of the content bytes (of the path, for a row landed rejected)
    shard: str
    source: str
    path: str
    origin: str  # JSON text: where the file came from (row number, revision, ...)
    size_bytes: int
    duplicate_of: str | None  # file_id's first (source, path) when seen before
    content: str | None  # decoded text; None when the file was rejected
    status: str  # RawStatus
    detail: str | None = None  # why it was rejected, e.g. "line 3: not JSON (...)"


class IOPairRecord(Record):
    input: str  # canonical JSON of the kwargs dict
    output: str  # canonical JSON of the return value


class UnifiedFunctionRecord(Record):
    """A raw file refactored by the LLM into the unified format, or a function imported in it
    (from a `unified` source, without an LLM request), or why it was not."""

    function_id: str
    file_id: str
    shard: str
    status: str  # "ok" or a refactor rejection reason
    detail: str | None
    reference_code: str | None
    io_description: str | None
    input_generator: str | None
    problem_statement: str | None
    request_hash: str | None
    model: str | None
    duplicate_of: str | None = None  # the function this one nearly copies (near_duplicate)
    imported: bool = False  # came in the unified format from a source: no LLM request
    ios: list[IOPairRecord] = []  # pairs it came with; io_pairs re-runs them without a generator


class IOPairsRecord(Record):
    """The input/output pairs of one function, produced in the sandbox."""

    function_id: str
    shard: str
    status: str  # "ok" or a drop reason (too_few_pairs, nondeterministic, ...)
    detail: str | None
    pairs: list[IOPairRecord]
    counts: str  # JSON object of per-function counters (generator calls, drops by reason)


class PredictionTaskRecord(Record):
    """One prediction task: a prompt, what is given, and what verification needs."""

    task_id: str
    function_id: str
    shard: str
    kind: str  # task kind plugin name, e.g. output_prediction, input_prediction
    pair_index: int
    given: str  # canonical JSON shown in the prompt
    expected: str  # canonical JSON of the true answer value (output, or the original input)
    prompt: str
    status: str  # "ok" or "contaminated"
    detail: str | None


class ResponseRecord(Record):
    """One LLM reply at one turn, with the conversation that produced it."""

    task_id: str
    shard: str
    turn: int
    messages: str  # JSON list of {role, content} sent to the model
    content: str | None
    status: str  # ok, truncated, request_failed
    finish_reason: str | None
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    request_hash: str
    model: str


VerdictStatus = Literal[
    "correct",
    "wrong",
    "parse_error",
    "missing_key",
    "exec_error",
    "timeout",
    "truncated",
    "request_failed",
    "judge_error",
]


class VerdictRecord(Record):
    """The verified judgement of one reply; every non-correct verdict carries feedback."""

    task_id: str
    shard: str
    turn: int
    kind: str
    status: str  # VerdictStatus
    answer: str | None  # canonical JSON of the extracted answer value
    actual: str | None  # for input predictions: the output the predicted input really gives
    feedback: str | None


class ChatMessage(Record):
    role: str
    content: str


class DatasetRow(Record):
    """A released row: the CodeI/O column layout plus chat messages for fine-tuning."""

    task_id: str
    function_id: str
    shard: str
    kind: str
    prompt: str
    turn_1: str
    feedback_1: str | None
    turn_2: str | None
    feedback_2: str | None
    verdict_1: str
    verdict_2: str | None
    messages: list[ChatMessage]


class UnifiedDatasetRow(Record):
    """A function in the unified format with its I/O pairs and its input generator."""

    function_id: str
    shard: str
    problem_statement: str
    io_description: str
    reference_code: str
    input_generator: str | None  # None: imported with I/O pairs and no generator
    pairs: list[IOPairRecord]


# -- polars schemas ----------------------------------------------------------------------------

_SCALARS: dict[Any, pl.DataType] = {
    str: pl.String(),
    int: pl.Int64(),
    float: pl.Float64(),
    bool: pl.Boolean(),
}


def _dtype(annotation: Any) -> pl.DataType:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {annotation!r}")
        return _dtype(inner[0])
    if origin is Literal:
        return _dtype(type(get_args(annotation)[0]))
    if origin is list:
        return pl.List(_dtype(get_args(annotation)[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pl.Struct(polars_schema(annotation))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no polars type for {annotation!r}")


def polars_schema(model: type[BaseModel]) -> pl.Schema:
    """The polars schema matching a record model, field for field."""
    hints = typing.get_type_hints(model)
    return pl.Schema({name: _dtype(hints[name]) for name in model.model_fields})


def to_frame(records: list[BaseModel] | list[dict], model: type[BaseModel]) -> pl.DataFrame:
    """Validate records against `model` and build a frame with its exact schema."""
    rows = [(r if isinstance(r, model) else model.model_validate(r)).model_dump() for r in records]
    return pl.DataFrame(rows, schema=polars_schema(model), orient="row")


def check_schema(frame: pl.DataFrame, model: type[BaseModel]) -> list[str]:
    """Differences between a frame's schema and the model's; empty when they match."""
    expected, actual = polars_schema(model), frame.schema
    problems = [f"missing column {c!r}" for c in expected if c not in actual]
    problems += [f"unexpected column {c!r}" for c in actual if c not in expected]
    problems += [
        f"column {c!r} is {actual[c]}, expected {expected[c]}"
        for c in expected
        if c in actual and actual[c] != expected[c]
    ]
    return problems

"""Judging replies: extract the answer, compare outputs, re-run predicted inputs, write feedback."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from codeio_dagster.answers import extract_answer, feedback_text
from codeio_dagster.models import VerdictRecord, to_frame


@dataclass(frozen=True)
class InputRun:
    """A predicted input to execute against a task's reference code."""

    task_id: str
    code: str
    predicted_input: dict
    expected_output: str


@dataclass(frozen=True)
class InputRunResult:
    status: str  # correct, wrong, exec_error, timeout
    actual_output: str | None
    error: str | None


RunInputs = Callable[[Sequence[InputRun]], list[InputRunResult]]
Compare = Callable[[object, object], bool]


def judge(
    responses: pl.DataFrame,
    tasks: pl.DataFrame,
    *,
    answer_keys: dict[str, str],
    code_by_function: dict[str, str],
    compare: Compare,
    run_inputs: RunInputs,
) -> pl.DataFrame:
    """One VerdictRecord per response; input predictions are verified by execution."""
    task_rows = {row["task_id"]: row for row in tasks.iter_rows(named=True)}
    verdicts: dict[str, VerdictRecord] = {}
    pending: list[tuple[dict, dict, InputRun]] = []
    for resp in responses.iter_rows(named=True):
        task = task_rows[resp["task_id"]]
        kind, key = task["kind"], answer_keys[task["kind"]]

        def verdict(
            status: str, answer=None, actual=None, error=None, *, resp=resp, task=task, kind=kind
        ):
            return VerdictRecord(
                task_id=resp["task_id"],
                shard=resp["shard"],
                turn=resp["turn"],
                kind=kind,
                status=status,
                answer=answer,
                actual=actual,
                feedback=None
                if status == "correct"
                else feedback_text(
                    status,
                    kind=kind,
                    answer_json=answer,
                    expected_json=task["expected"],
                    actual_json=actual,
                    error=error,
                ),
            )

        if resp["status"] in ("request_failed", "truncated"):
            verdicts[resp["task_id"]] = verdict(resp["status"], error=resp["error"])
            continue
        extraction = extract_answer(resp["content"], key)
        if extraction.status != "ok":
            verdicts[resp["task_id"]] = verdict(extraction.status, error=extraction.detail)
            continue
        answer = json.dumps(extraction.value, sort_keys=True, ensure_ascii=False)
        if key == "input":
            if not isinstance(extraction.value, dict):
                verdicts[resp["task_id"]] = verdict(
                    "missing_key", answer, error="the input must be a JSON object of arguments"
                )
                continue
            run = InputRun(
                resp["task_id"],
                code_by_function[task["function_id"]],
                extraction.value,
                task["given"],  # for input prediction the given value is the output to reproduce
            )
            pending.append((resp, task, run))
            verdicts[resp["task_id"]] = verdict("wrong", answer)  # replaced below
        else:
            ok = compare(extraction.value, json.loads(task["expected"]))
            verdicts[resp["task_id"]] = verdict("correct" if ok else "wrong", answer)
    if pending:
        results = run_inputs([run for _, _, run in pending])
        for (resp, task, run), result in zip(pending, results, strict=True):
            answer = verdicts[run.task_id].answer
            verdicts[run.task_id] = VerdictRecord(
                task_id=run.task_id,
                shard=resp["shard"],
                turn=resp["turn"],
                kind=task["kind"],
                status=result.status,
                answer=answer,
                actual=result.actual_output,
                feedback=None
                if result.status == "correct"
                else feedback_text(
                    result.status,
                    kind=task["kind"],
                    answer_json=answer,
                    expected_json=task["expected"],
                    actual_json=result.actual_output,
                    error=result.error,
                ),
            )
    ordered = [verdicts[r] for r in responses.get_column("task_id").to_list()]
    return to_frame(ordered, VerdictRecord)

"""Judging replies: extract the answer, let its task kind check it (by execution where it asks),
write feedback."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from codeio_dagster.answers import extract_answer
from codeio_dagster.models import VerdictRecord, to_frame
from codeio_dagster.sandbox.jobs import JobResult
from codeio_dagster.tasks.base import TaskKind


@dataclass(frozen=True)
class InputRun:
    """A predicted input to execute against a task's reference code."""

    task_id: str
    code: str
    predicted_input: dict


# Runs each predicted input in the sandbox; the executor's own result, compared by nobody but
# the task kind.
RunInputs = Callable[[Sequence[InputRun]], list[JobResult]]


def _fault(exc: BaseException) -> str:
    """What a row whose judging raised records: a plugin's bug or a value too deep to read."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def judge(
    responses: pl.DataFrame,
    tasks: pl.DataFrame,
    *,
    kinds: Mapping[str, TaskKind],
    code_by_function: dict[str, str],
    run_inputs: RunInputs,
) -> pl.DataFrame:
    """One VerdictRecord per response, judged by the task's kind; executions are batched."""
    task_rows = {row["task_id"]: row for row in tasks.iter_rows(named=True)}
    verdicts: dict[str, VerdictRecord] = {}
    pending: list[tuple[dict, dict, InputRun, str]] = []

    def verdict(resp, task, status, answer=None, actual=None, error=None) -> VerdictRecord:
        feedback = None
        if status != "correct":
            try:
                feedback = kinds[task["kind"]].feedback(
                    status, answer_json=answer, actual_json=actual, error=error
                )
            except Exception as exc:  # noqa: BLE001 - a plugin's feedback bug is this row's
                status, feedback = "judge_error", f"judge_error: {_fault(exc)}"
        return VerdictRecord(
            task_id=resp["task_id"],
            shard=resp["shard"],
            turn=resp["turn"],
            kind=task["kind"],
            status=status,
            answer=answer,
            actual=actual,
            feedback=feedback,
        )

    for resp in responses.iter_rows(named=True):
        task = task_rows[resp["task_id"]]
        try:
            kind = kinds[task["kind"]]
            if resp["status"] in ("request_failed", "truncated"):
                verdicts[resp["task_id"]] = verdict(resp, task, resp["status"], error=resp["error"])
                continue
            extraction = extract_answer(resp["content"], kind.answer_key)
            if extraction.status != "ok":
                verdicts[resp["task_id"]] = verdict(
                    resp, task, extraction.status, error=extraction.detail
                )
                continue
            answer = json.dumps(extraction.value, sort_keys=True, ensure_ascii=False)
            check = kind.check_answer(extraction.value, task)
            if check.status == "needs_execution":
                # The sandbox only runs it; what the output means is the kind's to judge.
                if not isinstance(check.run_input, dict):
                    raise TypeError(
                        f"task kind {kind.name!r} asked to run {type(check.run_input).__name__}, "
                        "not a JSON object of keyword arguments"
                    )
                run = InputRun(
                    resp["task_id"], code_by_function[task["function_id"]], check.run_input
                )
                pending.append((resp, task, run, answer))
            else:
                verdicts[resp["task_id"]] = verdict(
                    resp, task, check.status, answer, error=check.detail
                )
        except Exception as exc:  # noqa: BLE001 - one row's fault is that row's verdict
            verdicts[resp["task_id"]] = verdict(resp, task, "judge_error", error=_fault(exc))
    if pending:
        results = run_inputs([run for _, _, run, _ in pending])
        for (resp, task, run, answer), result in zip(pending, results, strict=True):
            try:
                if result.status == "ok" and result.output is not None:
                    actual = json.loads(result.output)
                    check = kinds[task["kind"]].check_execution(actual, task)
                    status, error = check.status, check.detail
                else:
                    status = "timeout" if result.status == "timeout" else "exec_error"
                    error = f"{result.status}: {result.error}"
                judged = verdict(resp, task, status, answer, result.output, error)
            except Exception as exc:  # noqa: BLE001 - one row's fault is that row's verdict
                judged = verdict(resp, task, "judge_error", answer, error=_fault(exc))
            verdicts[run.task_id] = judged
    ordered = [verdicts[r] for r in responses.get_column("task_id").to_list()]
    return to_frame(ordered, VerdictRecord)

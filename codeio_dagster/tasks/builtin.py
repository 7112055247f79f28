"""The two built-in task kinds of CodeI/O: output prediction and input prediction."""

from __future__ import annotations

import json
from typing import Any

from codeio_dagster.models import IOPairRecord
from codeio_dagster.prompt_templates import fence_for, load_template, render
from codeio_dagster.tasks.base import (
    Check,
    FunctionView,
    TaskBuildError,
    TaskKind,
    TaskPrompt,
    field_of,
    parse_json_field,
)


def _outputs_equal(pred: Any, truth: Any) -> bool:
    # The sandbox owns the comparison rule (DESIGN section 1, step 6); one rule everywhere.
    from codeio_dagster.sandbox.values import outputs_equal

    return outputs_equal(pred, truth)


def _hint(fn: FunctionView, include_code: bool) -> str:
    if not include_code:
        return ""
    code = fn.reference_code.strip("\n")
    return render(load_template("task_hint.md"), code=code, fence=fence_for(code))


def _check_pair(pair: IOPairRecord) -> None:
    kwargs = parse_json_field(pair.input, "pair input")
    parse_json_field(pair.output, "pair output")
    if not isinstance(kwargs, dict):
        raise TaskBuildError("invalid_pair", f"pair input is not a JSON object: {pair.input:.80}")


def _render_task(template: str, fn: FunctionView, given: str, include_code: bool) -> str:
    for field in ("problem_statement", "io_description"):
        if not (getattr(fn, field) or "").strip():
            raise TaskBuildError("missing_text", f"function {fn.function_id} has no {field}")
    if include_code and not (fn.reference_code or "").strip():
        raise TaskBuildError("missing_text", f"function {fn.function_id} has no reference_code")
    return render(
        load_template(template),
        problem=fn.problem_statement.strip(),
        io_description=fn.io_description.strip(),
        given=given,
        hint=_hint(fn, include_code),
    ).strip()


class OutputPrediction(TaskKind):
    """Given an input (JSON kwargs), predict the output; checked by the CodeI/O comparison rule."""

    name = "output_prediction"
    answer_key = "output"
    template_version = "output-v2"
    template_files = ("output_prediction.md", "task_hint.md")

    def build_prompt(
        self, fn: FunctionView, pair: IOPairRecord, *, include_code: bool
    ) -> TaskPrompt:
        _check_pair(pair)
        prompt = _render_task("output_prediction.md", fn, pair.input, include_code)
        return TaskPrompt(given=pair.input, expected=pair.output, prompt=prompt)

    def check_answer(self, answer_value: Any, task: Any) -> Check:
        truth = json.loads(field_of(task, "expected"))
        return Check("correct" if _outputs_equal(answer_value, truth) else "wrong")


class InputPrediction(TaskKind):
    """Given an output, predict a feasible input; checked by running it (any input that
    reproduces the output is right, so inputs are never compared directly)."""

    name = "input_prediction"
    answer_key = "input"
    template_version = "input-v2"
    template_files = ("input_prediction.md", "task_hint.md")

    def build_prompt(
        self, fn: FunctionView, pair: IOPairRecord, *, include_code: bool
    ) -> TaskPrompt:
        _check_pair(pair)
        prompt = _render_task("input_prediction.md", fn, pair.output, include_code)
        return TaskPrompt(given=pair.output, expected=pair.input, prompt=prompt)

    def check_answer(self, answer_value: Any, task: Any) -> Check:
        if not isinstance(answer_value, dict):
            return Check("missing_key", detail="the input must be a JSON object of arguments")
        return Check("needs_execution", run_input=answer_value)

    def check_execution(self, actual_value: Any, task: Any) -> Check:
        truth = json.loads(field_of(task, "given"))
        return Check("correct" if _outputs_equal(actual_value, truth) else "wrong")

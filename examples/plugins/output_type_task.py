"""Example task-kind plugin: predict only the JSON type of a function's output.

A cheap auxiliary task: the model reasons about the code path taken but names only the kind of
value returned. Use it from codeio.yaml with

    tasks:
      plugin_modules: [examples/plugins/output_type_task.py]
      kinds: {output_prediction: 1, input_prediction: 1, output_type_prediction: 1}
"""

from __future__ import annotations

import json
from typing import Any

from codeio_dagster.models import IOPairRecord
from codeio_dagster.tasks.base import Check, FunctionView, TaskKind, TaskPrompt, field_of

JSON_TYPES = ("null", "boolean", "number", "string", "list", "object")


def json_type(value: Any) -> str:
    """The JSON type name of a decoded JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


# The kind's own wording: its prompt and the feedback to a wrong type. Listed in `templates()`,
# so the dataset card's hash of this kind changes whenever either text does.
PROMPT = (
    "{problem}\n\n{io_description}{code}\n\nFor the input\n\n```json\n{input}\n```\n\n"
    "which kind of JSON value is the result: one of {types}? Think it through, then end with"
    '\n\n```json\n{{"type": "<kind>"}}\n```'
)
WRONG = "The result is not of the type {answer}; follow the code path for this input again."


class OutputTypePrediction(TaskKind):
    """Given an input, name the JSON type of the output."""

    name = "output_type_prediction"
    answer_key = "type"
    template_version = "output-type-v1"

    @classmethod
    def templates(cls) -> list[str]:
        return [PROMPT, WRONG]

    def build_prompt(
        self, fn: FunctionView, pair: IOPairRecord, *, include_code: bool
    ) -> TaskPrompt:
        expected = json.dumps(json_type(json.loads(pair.output)))
        code = f"\n\nThe function:\n\n```python\n{fn.reference_code}\n```" if include_code else ""
        prompt = PROMPT.format(
            problem=fn.problem_statement,
            io_description=fn.io_description,
            code=code,
            input=pair.input,
            types=", ".join(JSON_TYPES),
        )
        return TaskPrompt(given=pair.input, expected=expected, prompt=prompt)

    def check_answer(self, answer_value: Any, task: Any) -> Check:
        if answer_value not in JSON_TYPES:
            return Check("missing_key", detail=f"the type must be one of {', '.join(JSON_TYPES)}")
        truth = json.loads(field_of(task, "expected"))
        return Check("correct" if answer_value == truth else "wrong")

    def feedback(self, status: str, *, answer_json=None, actual_json=None, error=None) -> str:
        if status == "wrong":
            return WRONG.format(answer=answer_json)
        return super().feedback(
            status, answer_json=answer_json, actual_json=actual_json, error=error
        )

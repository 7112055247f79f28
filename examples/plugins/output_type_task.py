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


class OutputTypePrediction(TaskKind):
    """Given an input, name the JSON type of the output."""

    name = "output_type_prediction"
    answer_key = "type"
    template_version = "output-type-v1"

    def build_prompt(
        self, fn: FunctionView, pair: IOPairRecord, *, include_code: bool
    ) -> TaskPrompt:
        expected = json.dumps(json_type(json.loads(pair.output)))
        code = f"\n\nThe function:\n\n```python\n{fn.reference_code}\n```" if include_code else ""
        prompt = (
            f"{fn.problem_statement}\n\n{fn.io_description}{code}\n\n"
            f"For the input\n\n```json\n{pair.input}\n```\n\nwhich kind of JSON value is the "
            f"result: one of {', '.join(JSON_TYPES)}? Think it through, then end with\n\n"
            '```json\n{"type": "<kind>"}\n```'
        )
        return TaskPrompt(given=pair.input, expected=expected, prompt=prompt)

    def check_answer(self, answer_value: Any, task: Any) -> Check:
        if answer_value not in JSON_TYPES:
            return Check("missing_key", detail=f"the type must be one of {', '.join(JSON_TYPES)}")
        truth = json.loads(field_of(task, "expected"))
        return Check("correct" if answer_value == truth else "wrong")

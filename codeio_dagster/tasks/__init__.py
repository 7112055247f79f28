"""Prediction task kind plugins (entry-point group `codeio_dagster.tasks`)."""

from __future__ import annotations

from collections.abc import Iterable

from codeio_dagster.tasks.base import (
    Check,
    FunctionView,
    TaskBuildError,
    TaskKind,
    TaskPrompt,
    choose_pairs,
    task_id_for,
)
from codeio_dagster.tasks.builtin import InputPrediction, OutputPrediction


def prompt_hashes(kinds: Iterable[type[TaskKind]] | None = None) -> dict[str, str]:
    """sha256 of every prompt template in use: refactor, each task kind, feedback/revision."""
    from codeio_dagster.answers import feedback_hash
    from codeio_dagster.refactor import template_hash

    hashes = {"refactor": template_hash()}
    for kind in kinds if kinds is not None else (OutputPrediction, InputPrediction):
        hashes[kind.name] = kind.prompt_hash()
    hashes["feedback"] = feedback_hash()
    return hashes


__all__ = [
    "Check",
    "FunctionView",
    "InputPrediction",
    "OutputPrediction",
    "TaskBuildError",
    "TaskKind",
    "TaskPrompt",
    "choose_pairs",
    "prompt_hashes",
    "task_id_for",
]

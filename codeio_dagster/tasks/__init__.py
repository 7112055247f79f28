"""Prediction task kind plugins (entry-point group `codeio_dagster.tasks`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from codeio_dagster.models import IOPairRecord, PredictionTaskRecord
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
    from codeio_dagster.feedback import feedback_hash
    from codeio_dagster.refactor import template_hash

    hashes = {"refactor": template_hash()}
    for kind in kinds if kinds is not None else (OutputPrediction, InputPrediction):
        hashes[kind.name] = kind.prompt_hash()
    hashes["feedback"] = feedback_hash()
    return hashes


def make_all_tasks(
    kinds: Mapping[str, TaskKind],
    per_function: Mapping[str, int],
    functions: Sequence[FunctionView],
    pairs_by_function: Mapping[str, Iterable[IOPairRecord | Mapping[str, str]]],
    *,
    include_code: bool,
    shard: str,
) -> tuple[list[PredictionTaskRecord], dict[str, int]]:
    """Every configured kind's tasks, and the kinds' counters merged: `rows_in` (functions),
    `kept` (tasks made) and `dropped_<reason>` (rejected pairs summed over kinds; functions
    without pairs counted once)."""
    records: list[PredictionTaskRecord] = []
    drops: dict[str, int] = {}
    for name, count in per_function.items():
        kind = kinds[name]
        records += kind.make_tasks(
            functions,
            pairs_by_function,
            per_function=count,
            include_code=include_code,
            shard=shard,
        )
        for key, n in kind.counters.items():
            if not key.startswith("dropped_") or not n:
                continue
            # Every kind sees the same functions: one without pairs is one drop, not one per kind.
            merged = max if key == "dropped_no_pairs" else sum
            drops[key] = merged((drops.get(key, 0), n))
    return records, {"rows_in": len(functions), "kept": len(records), **drops}


__all__ = [
    "Check",
    "FunctionView",
    "InputPrediction",
    "OutputPrediction",
    "TaskBuildError",
    "TaskKind",
    "TaskPrompt",
    "choose_pairs",
    "make_all_tasks",
    "prompt_hashes",
    "task_id_for",
]

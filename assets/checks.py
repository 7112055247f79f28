"""Quality gates, run inside the step of the asset they check (no check steps of their own).

Each stage declares `check_specs=check_specs(name)` and ends with
`yield from checked(context, frame, metadata, config)`: the output is stored, then each check
judges the frame the stage just made. Blocking checks (ERROR severity) stop everything
downstream in the run, `hub_publication` included, so nothing broken or empty is published:
the schema of every table, a shard with no usable raw file, an empty dataset, and a request
failure rate above `llm.max_failure_rate`. The pass-rate floor and the contamination rate warn.

This module only declares the checks, so every stage asset can import it cheaply; what each
check computes is in `check_judges.py`, imported when a stage's step runs its checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import dagster as dg

if TYPE_CHECKING:
    import polars as pl

    from codeio_dagster.config import CodeioConfig


class CheckSpec(NamedTuple):
    name: str
    description: str
    blocking: bool = True


SCHEMA = CheckSpec("schema", "Columns and types of every stored row match the record model.")
_NON_EMPTY = CheckSpec("non_empty", "The dataset shard has rows.")
# Checks of each stage besides `schema`; their judges are `check_judges.JUDGES[(stage, name)]`.
CHECKS: dict[str, list[CheckSpec]] = {
    "raw_code": [CheckSpec("non_empty", "The shard holds at least one usable raw file.")],
    "responses": [
        CheckSpec(
            "request_failure_rate", "The share of failed requests is at most llm.max_failure_rate."
        )
    ],
    "verdicts": [
        CheckSpec(
            "pass_rate_floor",
            "The share of correct replies is at least checks.min_pass_rate.",
            blocking=False,
        )
    ],
    "prediction_tasks": [
        CheckSpec(
            "decontamination",
            "The share of tasks overlapping a benchmark is at most checks.max_contamination_rate.",
            blocking=False,
        )
    ],
    "codeio_dataset": [_NON_EMPTY],
    "unified_dataset": [_NON_EMPTY],
    # A shard whose first answers were all wrong and whose revisions all failed has no
    # CodeI/O++ row; that is worth a warning, not a reason to withhold codeio and unified.
    "codeio_pp_dataset": [_NON_EMPTY._replace(blocking=False)],
}


def stage_of(asset: str) -> str:
    """The stage an asset belongs to: responses_turn_2 -> responses."""
    return re.sub(r"_turn_\d+$", "", asset)


def checks_for(asset: str) -> list[CheckSpec]:
    return [SCHEMA, *CHECKS.get(stage_of(asset), [])]


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    """The checks declared on `asset` (run in its own step)."""
    return [
        dg.AssetCheckSpec(c.name, asset=asset, description=c.description, blocking=c.blocking)
        for c in checks_for(asset)
    ]


def checked(
    context: dg.AssetExecutionContext,
    frame: pl.DataFrame,
    metadata: Mapping[str, Any],
    config: CodeioConfig | None = None,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The stage's output, then its checks' results: what an asset with check_specs yields."""
    from codeio_dagster.assets.check_judges import evaluate
    from codeio_dagster.versions import versioned_output

    yield versioned_output(frame, dict(metadata))
    yield from evaluate(context.asset_key.to_user_string(), frame, metadata, config)

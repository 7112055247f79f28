"""Quality gates, run inside the step of the asset they check (no check steps of their own).

Each stage declares `check_specs=check_specs(name)` and ends with
`yield from checked(context, frame, metadata, config)`: the output is stored, then each check
judges the frame the stage just made. Blocking checks (ERROR severity) stop everything
downstream in the run, `hub_publication` included, so nothing broken or empty is published:
the schema of every table, a shard with no usable raw file, an empty dataset, and a request
failure rate above `llm.max_failure_rate`. The pass-rate floor and the contamination rate warn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
from pydantic import BaseModel

from codeio_dagster.config import CodeioConfig
from codeio_dagster.funnel import metadata_values
from codeio_dagster.llm.settings import LLMSettings
from codeio_dagster.models import (
    DatasetRow,
    IOPairsRecord,
    PredictionTaskRecord,
    RawFileRecord,
    ResponseRecord,
    UnifiedDatasetRow,
    UnifiedFunctionRecord,
    VerdictRecord,
    check_schema,
)
from codeio_dagster.versions import versioned_output

SCHEMAS: dict[str, type[BaseModel]] = {
    "raw_code": RawFileRecord,
    "unified_functions": UnifiedFunctionRecord,
    "io_pairs": IOPairsRecord,
    "prediction_tasks": PredictionTaskRecord,
    "responses": ResponseRecord,
    "verdicts": VerdictRecord,
    "codeio_dataset": DatasetRow,
    "codeio_pp_dataset": DatasetRow,
    "unified_dataset": UnifiedDatasetRow,
}

Verdict = tuple[bool, dict[str, Any]]
Judge = Callable[[str, pl.DataFrame, Mapping[str, Any], CodeioConfig | None], Verdict]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    judge: Judge
    blocking: bool = True

    def spec(self, asset: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name, asset=asset, description=self.description, blocking=self.blocking
        )


def _schema(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    model = SCHEMAS[stage_of(asset)]
    problems = check_schema(frame, model)
    return not problems, {
        "checked": f"columns and types of all {frame.height} stored rows against {model.__name__}",
        "rows_checked": frame.height,
        "problems": "\n".join(problems) or "none",
    }


def _usable_files(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    usable = frame.filter(pl.col("status") == "ok").height
    return usable > 0, {
        "checked": "the shard holds at least one raw file that decoded and was not rejected",
        "usable_files": usable,
        "rows_checked": frame.height,
    }


def _rows(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    return frame.height > 0, {
        "checked": "the dataset shard has at least one row to publish",
        "rows": frame.height,
    }


def _request_failures(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    failed = meta.get("requests_failed")
    if failed is None:
        failed = frame.filter(pl.col("status") == "request_failed").height
    rate = meta.get("request_failure_rate")
    if rate is None:
        rate = failed / frame.height if frame.height else 0.0
    # Without a config (a check run on its own), the bound is the setting's default.
    bound = (config.llm if config else LLMSettings()).max_failure_rate
    every = frame.height > 0 and failed == frame.height
    return rate <= bound and not every, {
        "checked": "share of the stage's requests that failed, against llm.max_failure_rate "
        "(and not every request failed)",
        "requests": frame.height,
        "requests_failed": int(failed),
        "request_failure_rate": round(float(rate), 4),
        "max_failure_rate": bound,
    }


def _pass_rate(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    floor = config.checks.min_pass_rate if config else 0.0
    correct = frame.filter(pl.col("status") == "correct").height
    rate = correct / frame.height if frame.height else 0.0
    return frame.height == 0 or rate >= floor, {
        "checked": "share of judged replies that are correct, against checks.min_pass_rate",
        "judged": frame.height,
        "correct": correct,
        "pass_rate": round(rate, 4),
        "floor": floor,
    }


def _contamination(asset: str, frame: pl.DataFrame, meta, config) -> Verdict:
    ceiling = config.checks.max_contamination_rate if config else 0.0
    hit = frame.filter(pl.col("status") == "contaminated").height
    rate = hit / frame.height if frame.height else 0.0
    benchmarks = meta.get("decontamination_benchmarks", "none")
    if benchmarks == "none":
        # Nothing to compare with (decontamination.builtin and benchmarks both empty).
        return False, {"checked": "nothing: no benchmark is configured", "tasks": frame.height}
    return rate <= ceiling, {
        "checked": "share of prompts sharing a word n-gram with a benchmark, against "
        "checks.max_contamination_rate (contaminated tasks are dropped either way)",
        "tasks_checked": frame.height,
        "contaminated": hit,
        "rate": round(rate, 4),
        "ceiling": ceiling,
        "benchmarks": benchmarks,
    }


SCHEMA = Check("schema", "Columns and types of every stored row match the record model.", _schema)
CHECKS: dict[str, list[Check]] = {
    "raw_code": [
        Check("non_empty", "The shard holds at least one usable raw file.", _usable_files)
    ],
    "responses": [
        Check(
            "request_failure_rate",
            "The share of failed requests is at most llm.max_failure_rate.",
            _request_failures,
        )
    ],
    "verdicts": [
        Check(
            "pass_rate_floor",
            "The share of correct replies is at least checks.min_pass_rate.",
            _pass_rate,
            blocking=False,
        )
    ],
    "prediction_tasks": [
        Check(
            "decontamination",
            "The share of tasks overlapping a benchmark is at most checks.max_contamination_rate.",
            _contamination,
            blocking=False,
        )
    ],
    "codeio_dataset": [Check("non_empty", "The dataset shard has rows.", _rows)],
    "unified_dataset": [Check("non_empty", "The dataset shard has rows.", _rows)],
    # A shard whose first answers were all wrong and whose revisions all failed has no
    # CodeI/O++ row; that is worth a warning, not a reason to withhold codeio and unified.
    "codeio_pp_dataset": [Check("non_empty", "The dataset shard has rows.", _rows, False)],
}


def stage_of(asset: str) -> str:
    """The stage an asset belongs to: responses_turn_2 -> responses."""
    return re.sub(r"_turn_\d+$", "", asset)


def checks_for(asset: str) -> list[Check]:
    return [SCHEMA, *CHECKS.get(stage_of(asset), [])]


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    """The checks declared on `asset` (run in its own step)."""
    return [check.spec(asset) for check in checks_for(asset)]


def evaluate(
    asset: str,
    frame: pl.DataFrame,
    metadata: Mapping[str, Any] | None = None,
    config: CodeioConfig | None = None,
) -> list[dg.AssetCheckResult]:
    """Every check of `asset` on the frame it just made (metadata: what it reported)."""
    meta = metadata_values(metadata or {})
    results = []
    for check in checks_for(asset):
        passed, details = check.judge(asset, frame, meta, config)
        results.append(
            dg.AssetCheckResult(
                asset_key=asset,
                check_name=check.name,
                passed=bool(passed),
                severity=dg.AssetCheckSeverity.ERROR
                if check.blocking
                else dg.AssetCheckSeverity.WARN,
                metadata=details,
            )
        )
    return results


def checked(
    context: dg.AssetExecutionContext,
    frame: pl.DataFrame,
    metadata: Mapping[str, Any],
    config: CodeioConfig | None = None,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The stage's output, then its checks' results: what an asset with check_specs yields."""
    yield versioned_output(frame, dict(metadata))
    yield from evaluate(context.asset_key.to_user_string(), frame, metadata, config)

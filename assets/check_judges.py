"""What each quality gate computes: one judge per (stage, check), and `evaluate`, which runs the
checks `checks.py` declares on the frame a stage just made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg
import polars as pl
from pydantic import BaseModel

from codeio_dagster.assets.checks import checks_for, stage_of
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

if TYPE_CHECKING:
    from codeio_dagster.config import CodeioConfig

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
# (asset, frame, reported metadata, CodeioConfig or None) -> (passed, check metadata)
Judge = Callable[[str, pl.DataFrame, Mapping[str, Any], Any], Verdict]


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


JUDGES: dict[tuple[str, str], Judge] = {
    ("*", "schema"): _schema,
    ("raw_code", "non_empty"): _usable_files,
    ("responses", "request_failure_rate"): _request_failures,
    ("verdicts", "pass_rate_floor"): _pass_rate,
    ("prediction_tasks", "decontamination"): _contamination,
    ("codeio_dataset", "non_empty"): _rows,
    ("unified_dataset", "non_empty"): _rows,
    ("codeio_pp_dataset", "non_empty"): _rows,
}


def judge_of(asset: str, check: str) -> Judge:
    """The judge of one declared check (`schema` is every stage's)."""
    return JUDGES.get((stage_of(asset), check)) or JUDGES[("*", check)]


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
        passed, details = judge_of(asset, check.name)(asset, frame, meta, config)
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

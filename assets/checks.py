"""Quality gates: schema, non-empty partitions, pass-rate floor, contamination rate."""

from __future__ import annotations

import warnings

import dagster as dg
import polars as pl
from pydantic import BaseModel

from codeio_dagster.config import CodeioConfig
from codeio_dagster.io_manager import partition_path, stage_tables_dir
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
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.turns import responses_name, verdicts_name


def _stored(
    context: dg.AssetCheckExecutionContext, codeio: CodeioResource, asset: str
) -> pl.DataFrame:
    # The partition just materialised, read where the IO manager stored it.
    stored = stage_tables_dir(codeio.config.data_dir)
    return pl.read_parquet(partition_path(stored, asset, context.partition_key))


def _schema_check(asset: str, model: type[BaseModel]) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="schema",
        partitions_def=shards,
        description=f"Columns and types match {model.__name__}.",
    )
    def _check(context, codeio: CodeioResource) -> dg.AssetCheckResult:
        frame = _stored(context, codeio, asset)
        problems = check_schema(frame, model)
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={"problems": "\n".join(problems) or "none", "rows": frame.height},
        )

    return _check


def build_checks(config: CodeioConfig) -> list[dg.AssetChecksDefinition]:
    tables: dict[str, type[BaseModel]] = {
        "raw_code": RawFileRecord,
        "unified_functions": UnifiedFunctionRecord,
        "io_pairs": IOPairsRecord,
        "prediction_tasks": PredictionTaskRecord,
        "codeio_dataset": DatasetRow,
        "unified_dataset": UnifiedDatasetRow,
    }
    if config.revision.turns:  # codeio_pp_dataset is only built with a revision turn
        tables["codeio_pp_dataset"] = DatasetRow
    for turn in range(config.revision.turns + 1):
        tables[responses_name(turn)] = ResponseRecord
        tables[verdicts_name(turn)] = VerdictRecord
    floor = config.checks.min_pass_rate
    ceiling = config.checks.max_contamination_rate

    # Partitioned asset checks are a preview feature in Dagster 1.13; they are what lets a check
    # see the partition just materialised, so the warning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = [_schema_check(asset, model) for asset, model in tables.items()]

        @dg.asset_check(
            asset="raw_code",
            partitions_def=shards,
        )
        def non_empty(context, codeio: CodeioResource) -> dg.AssetCheckResult:
            """The shard holds at least one usable raw file."""
            frame = _stored(context, codeio, "raw_code")
            usable = frame.filter(pl.col("status") == "ok").height
            return dg.AssetCheckResult(
                passed=usable > 0, metadata={"usable_files": usable, "rows": frame.height}
            )

        @dg.asset_check(
            asset="verdicts",
            partitions_def=shards,
        )
        def pass_rate_floor(context, codeio: CodeioResource) -> dg.AssetCheckResult:
            """First-answer pass rate is at least checks.min_pass_rate."""
            frame = _stored(context, codeio, "verdicts")
            rate = frame.filter(pl.col("status") == "correct").height / max(frame.height, 1)
            return dg.AssetCheckResult(
                passed=rate >= floor,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"pass_rate": round(rate, 4), "floor": floor, "rows": frame.height},
            )

        @dg.asset_check(
            asset="prediction_tasks",
            partitions_def=shards,
        )
        def decontamination(context, codeio: CodeioResource) -> dg.AssetCheckResult:
            """Share of tasks dropped for n-gram overlap with the configured benchmarks."""
            frame = _stored(context, codeio, "prediction_tasks")
            hit = frame.filter(pl.col("status") == "contaminated").height
            rate = hit / max(frame.height, 1)
            return dg.AssetCheckResult(
                passed=rate <= ceiling,
                metadata={
                    "contaminated": hit,
                    "rate": round(rate, 4),
                    "ceiling": ceiling,
                    "benchmarks": [p.name for p in config.decontamination.benchmarks],
                },
            )

    return checks + [non_empty, pass_rate_floor, decontamination]

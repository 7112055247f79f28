"""Rows of the stage tables for the sandbox's asset tests, and stand-in upstream assets."""

from __future__ import annotations

import dagster as dg
import polars as pl

from codeio_dagster.models import PredictionTaskRecord, ResponseRecord, UnifiedFunctionRecord
from codeio_dagster.partitions import shards


def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
    """An upstream asset of that name materialising frame."""

    @dg.asset(name=name, partitions_def=shards)
    def _asset() -> pl.DataFrame:
        return frame

    return _asset


def unified_function(
    fid: str, reference_code: str, input_generator: str | None
) -> UnifiedFunctionRecord:
    return UnifiedFunctionRecord(
        function_id=fid,
        file_id=f"file-{fid}",
        shard="s1",
        status="ok",
        detail=None,
        reference_code=reference_code,
        io_description="n (int) -> something",
        input_generator=input_generator,
        problem_statement="Do it.",
        request_hash=None,
        model=None,
    )


def input_task(task_id: str, fid: str, given: str, expected: str) -> PredictionTaskRecord:
    """An input-prediction task: find an input whose output is `given`."""
    return PredictionTaskRecord(
        task_id=task_id,
        function_id=fid,
        shard="s1",
        kind="input_prediction",
        pair_index=0,
        given=given,
        expected=expected,
        prompt="Predict an input.",
        status="ok",
        detail=None,
    )


def reply(task_id: str, content: str, shard: str = "s1") -> ResponseRecord:
    """A complete model reply to a task."""
    return ResponseRecord(
        task_id=task_id,
        shard=shard,
        turn=0,
        messages="[]",
        content=content,
        status="ok",
        finish_reason="stop",
        error=None,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=0.0,
        cached=False,
        request_hash="h",
        model="m",
    )

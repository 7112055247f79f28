"""The verdicts asset in real nsjail: a rerun quotes the stored execution, not a fresh one.

A function that returns its own clock passes any output comparison by chance at best; the
feedback for a wrong input prediction quotes what running it gave. Quoting a fresh run changed
the revision prompt (and so sent a new LLM request) on every rerun; the stored run does not.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from codeio_dagster.assets.verdicts import build_verdicts
from codeio_dagster.config import load_config
from codeio_dagster.models import (
    PredictionTaskRecord,
    ResponseRecord,
    UnifiedFunctionRecord,
    to_frame,
)
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox.resources import NsjailSandbox

CLOCK = "import time\n\ndef main_solution(n):\n    return time.perf_counter_ns() + n\n"


def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=shards)
    def _asset() -> pl.DataFrame:
        return frame

    return _asset


def test_feedback_quotes_the_stored_run_on_every_rerun(sandbox_settings, tmp_path):
    config = tmp_path / "codeio.yaml"
    (tmp_path / "corpus").mkdir(exist_ok=True)  # the source folder must exist at load
    config.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        f"data_dir: {tmp_path / 'data'}\n"
    )
    task = PredictionTaskRecord(
        task_id="t1",
        function_id="f1",
        shard="s1",
        kind="input_prediction",
        pair_index=0,
        given="0",
        expected='{"n": 0}',
        prompt="Predict an input.",
        status="ok",
        detail=None,
    )
    reply = ResponseRecord(
        task_id="t1",
        shard="s1",
        turn=0,
        messages="[]",
        content='```json\n{"input": {"n": 1}}\n```',
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
    function = UnifiedFunctionRecord(
        function_id="f1",
        file_id="file-f1",
        shard="s1",
        status="ok",
        detail=None,
        reference_code=CLOCK,
        io_description="n -> clock",
        input_generator="def input_generator():\n    return {'n': 0}\n",
        problem_statement="Read the clock.",
        request_hash=None,
        model=None,
    )
    assets = [
        stand_in("responses", to_frame([reply], ResponseRecord)),
        stand_in("prediction_tasks", to_frame([task], PredictionTaskRecord)),
        stand_in("unified_functions", to_frame([function], UnifiedFunctionRecord)),
        build_verdicts(0),
    ]
    seen = []
    for _ in range(2):
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(shards.name, ["s1"])
        result = dg.materialize(
            assets,
            partition_key="s1",
            instance=instance,
            resources={
                "io_manager": dg.InMemoryIOManager(),
                "codeio": CodeioResource.from_config(load_config(config), str(config)),
                "sandbox": NsjailSandbox(settings={"workers": 1}),
            },
            raise_on_error=False,
        )
        frame = result.output_for_node("verdicts")
        seen.append(frame.select("status", "actual", "feedback").row(0))
    status, actual, feedback = seen[0]
    assert status == "wrong" and actual in feedback
    assert seen[1] == seen[0]

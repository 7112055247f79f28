"""The verdicts asset in real nsjail: a rerun quotes the stored execution, not a fresh one.

A function that returns its own clock passes any output comparison by chance at best; the
feedback for a wrong input prediction quotes what running it gave. Quoting a fresh run changed
the revision prompt (and so sent a new LLM request) on every rerun; the stored run does not.
"""

from __future__ import annotations

import dagster as dg

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
from tests.sandbox.records import input_task, reply, stand_in, unified_function

CLOCK = "import time\n\ndef main_solution(n):\n    return time.perf_counter_ns() + n\n"


def test_feedback_quotes_the_stored_run_on_every_rerun(sandbox_settings, tmp_path):
    config = tmp_path / "codeio.yaml"
    (tmp_path / "corpus").mkdir(exist_ok=True)  # the source folder must exist at load
    config.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        f"data_dir: {tmp_path / 'data'}\n"
    )
    task = input_task("t1", "f1", given="0", expected='{"n": 0}')
    response = reply("t1", '```json\n{"input": {"n": 1}}\n```')
    function = unified_function("f1", CLOCK, "def input_generator():\n    return {'n': 0}\n")
    assets = [
        stand_in("responses", to_frame([response], ResponseRecord)),
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

"""The prediction_tasks asset run by Dagster: its counters carry the task kinds' drop reasons."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from codeio_dagster.assets.prediction_tasks import prediction_tasks
from codeio_dagster.config import load_config
from codeio_dagster.models import IOPairsRecord, UnifiedFunctionRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource


def function(fid: str, statement: str = "Add the numbers.") -> UnifiedFunctionRecord:
    return UnifiedFunctionRecord(
        function_id=fid,
        file_id=f"file-{fid}",
        shard="s1",
        status="ok",
        detail=None,
        reference_code="def main_solution(xs):\n    return sum(xs)\n",
        io_description="xs (list of int) -> int",
        input_generator="def input_generator():\n    return {'xs': [1]}\n",
        problem_statement=statement,
        request_hash=None,
        model=None,
    )


def pairs(fid: str, inputs: list[str]) -> IOPairsRecord:
    return IOPairsRecord(
        function_id=fid,
        shard="s1",
        status="ok",
        detail=None,
        pairs=[{"input": i, "output": "3"} for i in inputs],
        counts=json.dumps({}),
    )


def test_counters_count_functions_in_and_carry_every_kind_drop(tmp_path):
    (tmp_path / "corpus").mkdir()  # the source folder must exist at load
    config = tmp_path / "codeio.yaml"
    config.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        "tasks:\n  kinds: {output_prediction: 1, input_prediction: 1}\n"
    )
    functions = to_frame(
        [function("good"), function("bad_pair"), function("no_text", statement="  ")],
        UnifiedFunctionRecord,
    )
    io = to_frame(
        [
            pairs("good", ['{"xs": [1, 2]}', '{"xs": [3]}']),
            pairs("bad_pair", ["[1, 2]"]),  # not a JSON object of arguments
            pairs("no_text", ['{"xs": [1, 2]}']),
        ],
        IOPairsRecord,
    )

    def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=shards)
        def _asset() -> pl.DataFrame:
            return frame

        return _asset

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    result = dg.materialize(
        [stand_in("unified_functions", functions), stand_in("io_pairs", io), prediction_tasks],
        partition_key="s1",
        instance=instance,
        resources={
            "io_manager": dg.InMemoryIOManager(),
            "codeio": CodeioResource.from_config(load_config(config)),
        },
    )
    assert result.success
    frame = result.output_for_node("prediction_tasks")
    (event,) = result.asset_materializations_for_node("prediction_tasks")
    meta = {k: v.value for k, v in event.metadata.items()}
    assert frame.height == 2 and set(frame["function_id"]) == {"good"}
    counters = {
        k: v for k, v in meta.items() if k in ("rows_in", "kept") or k.startswith("dropped_")
    }
    assert counters == {
        "rows_in": 3,  # functions with pairs
        "kept": 2,  # one task per kind for `good`
        "dropped_invalid_pair": 2,  # bad_pair's pair, rejected by both kinds
        "dropped_missing_text": 2,  # no_text's pair, rejected by both kinds
    }
    assert "| invalid_pair | 2 |" in meta["drop_reasons"]
    assert meta["tasks_output_prediction"] == 1 == meta["tasks_input_prediction"]


def test_shipped_cruxeval_ngrams_catch_a_benchmark_function_with_no_file_configured(
    tmp_path, shared_fixtures
):
    config = tmp_path / "codeio.yaml"
    (tmp_path / "corpus").mkdir(exist_ok=True)  # the source folder must exist at load
    config.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        "tasks:\n  kinds: {output_prediction: 1}\n  include_reference_code: true\n"
        "checks: {max_contamination_rate: 0.2}\n"
    )
    crux = json.loads((shared_fixtures / "cruxeval.jsonl").read_text().splitlines()[0])
    leaked = function("leaked").model_copy(update={"reference_code": crux["code"]})
    functions = to_frame([function("clean"), leaked], UnifiedFunctionRecord)
    io = to_frame(
        [pairs("clean", ['{"xs": [1]}']), pairs("leaked", ['{"xs": [1]}'])], IOPairsRecord
    )

    @dg.asset(name="unified_functions", partitions_def=shards)
    def _functions() -> pl.DataFrame:
        return functions

    @dg.asset(name="io_pairs", partitions_def=shards)
    def _io() -> pl.DataFrame:
        return io

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    result = dg.materialize(
        [_functions, _io, prediction_tasks],
        partition_key="s1",
        instance=instance,
        resources={
            "io_manager": dg.InMemoryIOManager(),
            "codeio": CodeioResource.from_config(load_config(config)),
        },
        raise_on_error=False,
    )
    frame = result.output_for_node("prediction_tasks")
    status = dict(frame.select("function_id", "status").iter_rows())
    assert status == {"clean": "ok", "leaked": "contaminated"}
    # Half the tasks overlap CRUXEval: above the ceiling, the (warning) check fails and says why.
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "decontamination"
    ]
    assert not check.passed and check.metadata["benchmarks"].value == "cruxeval (shipped)"

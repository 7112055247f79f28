"""Values no stage can hold, through the assets in real nsjail: each is its row's status.

A reference function returns a value nested thousands deep or far too large, or writes its own
reply on the result channel: nested too deep for the host's decoder, or for the fork-server's.
io_pairs, prediction_tasks and verdicts each record such a row with its reason and go on; none
of them fails its step.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from codeio_dagster.assets.io_pairs import io_pairs
from codeio_dagster.assets.prediction_tasks import prediction_tasks
from codeio_dagster.assets.verdicts import build_verdicts
from codeio_dagster.config import load_config
from codeio_dagster.models import (
    IOPairRecord,
    IOPairsRecord,
    PredictionTaskRecord,
    ResponseRecord,
    UnifiedFunctionRecord,
    to_frame,
)
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox.resources import NsjailSandbox
from tests.sandbox.records import input_task, reply, stand_in, unified_function

# Deeper than any decoder on either side of the pipe reads.
DEPTH = 5000

FORGE = f"""
import json, struct, sys

def _result():
    frame = sys._getframe()
    while frame is not None:
        found = frame.f_locals.get("result")
        if type(found).__name__ == "_ResultBuffer":
            return found
        frame = frame.f_back
    raise AssertionError("no result mapping found to forge")

def forge_bytes(data):
    # What the fork-server's own writer does, with bytes no json.dumps would make.
    buf = _result()
    buf.slot ^= 1
    start = 4 + buf.slot * buf.room
    buf.mem[start : start + len(data)] = data
    buf.mem[:4] = struct.pack("=I", len(data) | (buf.slot << 31))
    import os
    os._exit(0)

DEEP_TEXT = "[" * {DEPTH} + "]" * {DEPTH}
"""

GEN = "def input_generator():\n    return {'n': random.randint(0, 10**6)}\n"

FUNCTIONS = {
    "deep": (
        "def main_solution(n):\n    v = []\n    for _ in range(3000):\n        v = [v]\n"
        "    return v\n"
    ),
    "huge": "def main_solution(n):\n    return list(range(10**6))\n",
    # Its reply's pair output is text nested deeper than the host's decoder reads.
    "forged_deep_text": FORGE
    + (
        "def main_solution(n):\n    return n\n\n"
        "def input_generator():\n"
        "    forge_bytes(json.dumps({'status': 'ok', 'counts': {},"
        " 'pairs': [['{\"n\": 1}', DEEP_TEXT]]}).encode())\n"
    ),
    # Its reply itself is nested deeper than the fork-server's decoder reads.
    "forged_deep_reply": FORGE
    + (
        "def main_solution(n):\n    return n\n\n"
        "def input_generator():\n"
        '    forge_bytes((\'{"status": "ok", "counts": \' + DEEP_TEXT + \'}\').encode())\n'
    ),
    "fine": "def main_solution(n):\n    return n + 1\n",
}


def _function(fid: str, code: str) -> UnifiedFunctionRecord:
    reference, _, generator = code.partition("def input_generator")
    generator = f"def input_generator{generator}" if generator else GEN
    return unified_function(fid, "import random\n" + reference, generator)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    path = tmp / "codeio.yaml"
    (tmp / "corpus").mkdir()
    path.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        f"data_dir: {tmp / 'data'}\n"
        "io_pairs: {max_pairs: 4, time_budget_s: 2, max_generator_calls: 60}\n"
    )
    return CodeioResource.from_config(load_config(path), str(path))


def _materialize(assets, config) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    return dg.materialize(
        assets,
        partition_key="s1",
        instance=instance,
        resources={
            "io_manager": dg.InMemoryIOManager(),
            "codeio": config,
            "sandbox": NsjailSandbox(settings={"workers": 2, "timeout_s": 5.0}),
        },
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def pair_rows(sandbox_settings, config):
    functions = to_frame([_function(f, c) for f, c in FUNCTIONS.items()], UnifiedFunctionRecord)
    result = _materialize([stand_in("unified_functions", functions), io_pairs], config)
    assert result.success
    return {r["function_id"]: r for r in result.output_for_node("io_pairs").iter_rows(named=True)}


def test_a_value_nested_thousands_deep_is_invalid_output_with_the_reason(pair_rows):
    row = pair_rows["deep"]
    assert row["status"] == "invalid_output" and row["pairs"] == []
    assert "nested deeper than 100 levels" in row["detail"]


def test_a_huge_value_is_too_large_output_with_the_limits(pair_rows):
    row = pair_rows["huge"]
    assert row["status"] == "too_large_output" and row["pairs"] == []
    assert "max_bytes 1024" in row["detail"]
    assert json.loads(row["counts"])["dropped_too_large_output"] > 0


def test_forged_replies_nested_too_deep_to_decode_are_invalid_output(pair_rows):
    text = pair_rows["forged_deep_text"]
    assert text["status"] == "invalid_output" and text["pairs"] == []
    assert "nested too deeply to decode" in text["detail"]
    reply = pair_rows["forged_deep_reply"]
    assert reply["status"] == "invalid_output" and "malformed result" in reply["detail"]


def test_the_other_functions_of_the_shard_keep_their_pairs(pair_rows):
    row = pair_rows["fine"]
    assert row["status"] == "ok" and len(row["pairs"]) == 4


def test_stored_pairs_too_deep_or_not_json_are_dropped_and_the_good_ones_kept(
    sandbox_settings, config
):
    # An imported function brings its own pairs (and no generator): io_pairs runs them again.
    deep = "[" * DEPTH + "]" * DEPTH
    record = unified_function("given", "def main_solution(n):\n    return n + 1\n", None)
    ios = [
        IOPairRecord(input='{"n": 1}', output=deep),
        IOPairRecord(input="{'n': 2}", output="3"),  # a Python literal, not JSON
        IOPairRecord(input='{"n": 3}', output="4"),
        IOPairRecord(input='{"n": 4}', output="5"),
    ]
    record = record.model_copy(update={"ios": ios})
    functions = to_frame([record], UnifiedFunctionRecord)
    result = _materialize([stand_in("unified_functions", functions), io_pairs], config)
    assert result.success
    (row,) = result.output_for_node("io_pairs").iter_rows(named=True)
    assert row["status"] == "ok" and len(row["pairs"]) == 2
    assert json.loads(row["counts"])["dropped_invalid_pair"] == 2
    assert "nested too deeply to decode" in row["detail"]


def test_prediction_tasks_drops_a_stored_pair_too_deep_to_read(sandbox_settings, config):
    # Pairs can come from elsewhere than this sandbox (stored I/O pairs of a dataset).
    deep = "[" * DEPTH + "]" * DEPTH
    functions = to_frame(
        [_function(f, FUNCTIONS[f]) for f in ("deep", "fine")], UnifiedFunctionRecord
    )
    pairs = to_frame(
        [
            IOPairsRecord(
                function_id=fid,
                shard="s1",
                status="ok",
                detail=None,
                pairs=[IOPairRecord(input='{"n": 1}', output=out)] * 2,
                counts="{}",
            )
            for fid, out in (("deep", deep), ("fine", "2"))
        ],
        IOPairsRecord,
    )
    result = _materialize(
        [stand_in("unified_functions", functions), stand_in("io_pairs", pairs), prediction_tasks],
        config,
    )
    assert result.success
    frame = result.output_for_node("prediction_tasks")
    assert set(frame.get_column("function_id")) == {"fine"}
    meta = result.asset_materializations_for_node("prediction_tasks")[0].metadata
    assert meta["dropped_invalid_pair"].value > 0


def test_verdicts_judges_a_run_whose_reply_is_too_deep_as_that_rows_exec_error(
    sandbox_settings, config
):
    forged = FORGE + (
        "def main_solution(n):\n"
        "    forge_bytes(json.dumps({'status': 'ok', 'output': DEEP_TEXT}).encode())\n"
    )
    codes = {"forged": forged, "huge": FUNCTIONS["huge"], "fine": FUNCTIONS["fine"]}
    functions = to_frame([_function(f, c) for f, c in codes.items()], UnifiedFunctionRecord)
    tasks = to_frame(
        [input_task(f"t-{fid}", fid, given="2", expected='{"n": 1}') for fid in codes],
        PredictionTaskRecord,
    )
    content = '```json\n{"input": {"n": 1}}\n```'
    replies = to_frame([reply(f"t-{fid}", content) for fid in codes], ResponseRecord)
    result = _materialize(
        [
            stand_in("responses", replies),
            stand_in("prediction_tasks", tasks),
            stand_in("unified_functions", functions),
            build_verdicts(0),
        ],
        config,
    )
    assert result.success
    rows = {r["task_id"]: r for r in result.output_for_node("verdicts").iter_rows(named=True)}
    assert rows["t-forged"]["status"] == "exec_error"
    assert "invalid_output" in rows["t-forged"]["feedback"]
    assert rows["t-huge"]["status"] == "exec_error"
    assert "output_limit" in rows["t-huge"]["feedback"]
    assert rows["t-fine"]["status"] == "correct"

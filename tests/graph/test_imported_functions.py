"""Functions imported from `unified` sources, through the assets and the sensor: no refactor
request, validation with reasons, given pairs re-run, generator pairs made, the graph as usual."""

from __future__ import annotations

import json
import textwrap

import dagster as dg
import polars as pl
import pytest

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.sensors.raw_code_sensor import raw_code_sensor
from codeio_dagster.shards import Landing, land_new_shards

pytestmark = pytest.mark.sandbox

DOUBLE = "def main_solution(n):\n    # twice n\n    result = n * 2\n    return result\n"
RELEASED = [  # the CodeI/O release's columns, pairs and no generator
    {
        "refcode": DOUBLE,
        "funcname": "main_solution",
        "problem_description": "Double a number n.",
        "io_requirements": "Input: n (int). Output: 2 * n (int).",
        "ios": [
            {"input": {"n": 1}, "output": 2},
            {"input": {"n": 3}, "output": 7},  # does not reproduce
            {"input": {"n": 5}, "output": 10},
        ],
    },
    {
        "refcode": "def main_solution(n):\n    print(n)\n    return n\n",
        "funcname": "main_solution",
        "problem_description": "Echo n.",
        "io_requirements": "n: int",
        "ios": [{"input": {"n": 1}, "output": 1}],
    },
    {  # DOUBLE with other names and comments: a near-duplicate of the first row
        "refcode": "def main_solution(n):\n    out = n * 2  # doubled\n    return out\n",
        "funcname": "main_solution",
        "problem_description": "Twice a number.",
        "io_requirements": "n: int -> int",
        "ios": [{"input": {"n": 2}, "output": 4}, {"input": {"n": 4}, "output": 8}],
    },
]
GENERATED = pl.DataFrame(  # another collection's columns, a generator taking a seeded rng
    {
        "code": ["def solve(n, step):\n    return sum(range(0, n, step))\n"],
        "gen": [
            "def generate_inputs(rng):\n"
            "    return {'n': rng.randint(1, 500), 'step': rng.randint(1, 5)}\n"
        ],
        "question": ["Add every step-th number from 0 below n."],
        "io": ["Input: n, step (int). Output: the sum (int)."],
    }
)


def _reply(messages: list[dict]) -> str:
    prompt = next(m["content"] for m in messages if m["role"] == "user")
    if "## Given input" in prompt:
        return 'It comes to 0.\n```json\n{"output": 0}\n```'
    if "## Given output" in prompt:
        return 'Any n will do.\n```json\n{"input": {"n": 0, "step": 1}}\n```'
    raise AssertionError("a refactor request was sent for an imported function")


def _write(tmp_path, base_url: str) -> str:
    (tmp_path / "released.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RELEASED))
    GENERATED.write_parquet(tmp_path / "generated.parquet")
    text = textwrap.dedent(
        f"""
        data_dir: data
        sources:
          - {{name: released, kind: unified, options: {{path: released.jsonl}}}}
          - name: generated
            kind: unified
            options:
              path: generated.parquet
              columns: {{reference_code: code, generator: gen, problem_statement: question,
                        io_description: io, entry_function: null, ios: null}}
              entry_function: solve
              generator: {{name: generate_inputs, argument: rng}}
        shards: {{size: 10}}
        dedup: {{enabled: true}}
        llm:
          base_url: {base_url}
          api_key_env: CODEIO_TEST_KEY
          cache_path: llm_cache.sqlite
          max_retries: 0
        stages:
          refactor: {{model: scripted, max_tokens: 200}}
          prediction: {{model: scripted, max_tokens: 200}}
          revision: {{model: scripted, max_tokens: 200}}
        tasks:
          kinds: {{output_prediction: 1, input_prediction: 1}}
        io_pairs: {{max_generator_calls: 50, max_pairs: 4}}
        publish: {{target: local, local_dir: published}}
        """
    )
    path = tmp_path / "codeio.yaml"
    path.write_text(text)
    return str(path)


def _metadata(instance, asset: str, shard: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[shard]), limit=1
    ).records
    (record,) = records
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_imported_shards_skip_the_refactor_and_run_the_rest(
    tmp_path, monkeypatch, graph_files, stage_tables
):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    llm = graph_files.ScriptedLLM(_reply)
    try:
        path = _write(tmp_path, llm.base_url)
        config = load_config(path)
        names = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
        assert names == ["released-00000", "generated-00000"]
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(shards.name, names)
        graph, resources = build_assets(config), build_resources(config, path)
        for shard in names:
            result = dg.materialize(
                graph, partition_key=shard, instance=instance, resources=resources
            )
            assert result.success
            # One graph: every asset, unified_functions included, materialised for the shard.
            done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
            assert done == {a.key.to_user_string() for a in graph}
        sent = [json.dumps(r["messages"]) for r in llm.requests]
    finally:
        llm.close()
    assert sent and all("## Given" in m for m in sent)  # prediction requests only

    released, generated = (
        stage_tables(config.data_dir, [s], ["unified_functions", "io_pairs", "unified_dataset"])
        for s in names
    )
    functions = released["unified_functions"]
    assert functions["imported"].to_list() == [True, True, True]
    assert functions["status"].to_list() == ["ok", "forbidden_io", "near_duplicate"]
    assert "print() call" in functions["detail"][1]
    assert functions["duplicate_of"][2] == functions["function_id"][0]
    meta = _metadata(instance, "unified_functions", names[0])
    assert (meta["imported"], meta["llm_requests"], meta["llm_cost_usd"]) == (3, 0, 0.0)
    assert meta["model"] == "none (imported functions)"
    assert (meta["kept"], meta["dropped_forbidden_io"], meta["dropped_near_duplicate"]) == (1, 1, 1)

    # The given pairs were re-run: the one that does not reproduce is gone, with its reason.
    (pairs,) = released["io_pairs"].iter_rows(named=True)
    assert pairs["status"] == "ok"
    assert [json.loads(p["input"]) for p in pairs["pairs"]] == [{"n": 1}, {"n": 5}]
    assert json.loads(pairs["counts"])["dropped_not_reproduced"] == 1
    assert "gave 6, stored 7" in pairs["detail"]
    assert _metadata(instance, "io_pairs", names[0])["calls.dropped_not_reproduced"] == 1
    (row,) = released["unified_dataset"].iter_rows(named=True)
    assert row["input_generator"] is None and row["reference_code"] == DOUBLE

    # The generator-style row: called as main_solution / input_generator(), new pairs made.
    (fn,) = generated["unified_functions"].iter_rows(named=True)
    assert fn["status"] == "ok" and fn["imported"]
    assert "main_solution = solve" in fn["reference_code"]
    (pairs,) = generated["io_pairs"].iter_rows(named=True)
    assert pairs["status"] == "ok" and len(pairs["pairs"]) == 4
    for pair in pairs["pairs"]:
        kwargs = json.loads(pair["input"])
        assert json.loads(pair["output"]) == sum(range(0, kwargs["n"], kwargs["step"]))
    assert _metadata(instance, "unified_functions", names[1])["llm_requests"] == 0
    assert _metadata(instance, "codeio_dataset", names[1])["kept"] > 0


def test_the_sensor_lands_new_rows_of_a_unified_table_as_a_new_shard(tmp_path, graph_files):
    path = _write(tmp_path, "http://127.0.0.1:9/v1")
    resources = build_resources(load_config(path), path)
    instance = dg.DagsterInstance.ephemeral()

    def tick():
        context = dg.build_sensor_context(
            instance=instance, resources={"codeio": resources["codeio"]}
        )
        result = raw_code_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return [r.partition_key for r in result.run_requests or []]

    assert tick() == ["released-00000", "generated-00000"]
    assert tick() == []
    more = dict(
        RELEASED[0], refcode=DOUBLE.replace("2", "3"), ios=[{"input": {"n": 1}, "output": 3}]
    )
    with (tmp_path / "released.jsonl").open("a") as handle:
        handle.write(json.dumps(more) + "\n")
    assert tick() == ["released-00001"]
    landed = Landing(tmp_path / "data" / "landing").read("released-00001")
    assert landed["path"].to_list() == ["released.jsonl:3"]
    assert json.loads(landed["origin"][0])["format"] == "unified"
    assert json.loads(landed["content"][0])["ios"] == [{"input": '{"n": 1}', "output": "3"}]

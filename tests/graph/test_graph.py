"""The asset graph on small inputs: real parsing, the real sandbox, a scripted endpoint."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest
import yaml

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.funnel import shard_funnel
from codeio_dagster.landing import Landing
from codeio_dagster.models import DatasetRow, polars_schema
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.sensors.raw_code_sensor import raw_code_sensor
from codeio_dagster.shards import land_new_shards

pytestmark = pytest.mark.sandbox

STAGES = [
    "raw_code",
    "unified_functions",
    "io_pairs",
    "prediction_tasks",
    "responses",
    "verdicts",
    "responses_turn_1",
    "verdicts_turn_1",
    "codeio_dataset",
    "codeio_pp_dataset",
    "unified_dataset",
]


def materialise(config_path: str, partitions: list[str], instance: dg.DagsterInstance):
    config = load_config(config_path)
    graph = build_assets(config)
    resources = build_resources(config, config_path)
    for key in partitions:
        result = dg.materialize(graph, partition_key=key, instance=instance, resources=resources)
        assert result.success
        # Checks run inside their asset's step: one step per asset, none per check.
        steps = {e.step_key for e in result.get_step_success_events()}
        assert steps == {a.key.to_user_string() for a in graph}
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) >= len(steps) and all(e.passed for e in evaluations)
    return config


def counters(instance: dg.DagsterInstance, asset: str) -> dict[str, int]:
    """rows_in, kept and the dropped_/verdict_ counters of the asset's latest materialisation."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    metadata = event.asset_materialization.metadata
    return {
        k: v.value
        for k, v in metadata.items()
        if k in ("rows_in", "kept") or k.startswith(("dropped_", "verdict_"))
    }


def land(config) -> tuple[list[str], dg.DagsterInstance]:
    names = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, names)
    return names, instance


def test_whole_graph_funnel_adds_up(tmp_path, scripted_llm, graph_files, stage_tables):
    graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta", "gamma"])
    (tmp_path / "corpus" / "empty.py").write_text("")
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    config = load_config(path)
    names, instance = land(config)
    materialise(path, names, instance)

    t = stage_tables(config.data_dir, names, STAGES)
    (name,) = names
    funnel = shard_funnel(instance, name, turns=1)
    assert funnel["raw_files"] == 4 and funnel["readable_files"] == 3
    assert t["raw_code"].filter(pl.col("path") == "empty.py")["status"].item() == "empty"
    assert funnel["functions"] == 3 == funnel["functions_with_pairs"]
    assert funnel["tasks"] == 6
    # The script answers output predictions wrongly first and rightly after feedback.
    v0 = t["verdicts"]
    assert v0.filter(pl.col("kind") == "output_prediction")["status"].unique().to_list() == [
        "wrong"
    ]
    assert v0.filter(pl.col("kind") == "input_prediction")["status"].unique().to_list() == [
        "correct"
    ]
    assert v0.filter(pl.col("status") != "correct")["feedback"].null_count() == 0
    assert t["responses_turn_1"].height == 3
    assert t["verdicts_turn_1"]["status"].unique().to_list() == ["correct"]
    assert funnel["correct_turn_0"] == 3 == funnel["not_correct_turn_0"]
    assert funnel["fixed_by_revision"] == 3 and funnel["correct_after_revision"] == 6
    assert funnel["codeio_rows"] == t["codeio_dataset"].height
    # Every row of every stage table carries a status; nothing leaves without a reason.
    for name in ["raw_code", "unified_functions", "io_pairs", "prediction_tasks", "verdicts"]:
        assert t[name]["status"].null_count() == 0, name

    for name in ("codeio_dataset", "codeio_pp_dataset"):
        assert t[name].schema == polars_schema(DatasetRow)
        assert t[name].height == 6
    pp = t["codeio_pp_dataset"]
    revised = pp.filter(pl.col("turn_2").is_not_null())
    assert revised.height == 3 and revised["verdict_2"].unique().to_list() == ["correct"]
    assert revised["messages"].list.len().unique().to_list() == [4]
    assert t["unified_dataset"].height == 3
    pairs = t["unified_dataset"]["pairs"].explode().struct.field("input").to_list()
    assert all("numbers" in json.loads(p) for p in pairs)

    published = tmp_path / "published" / "data" / "codeio_pp"
    assert sorted(p.name for p in published.glob("*.parquet")) == [f"{n}.parquet" for n in names]
    # The card's funnel is the one the stages reported, truncation counts included.
    card = (tmp_path / "published" / "README.md").read_text()
    for key, count in funnel.items():
        assert f"| `{key}` | {count} |" in card, key
    assert "| `truncated_turn_0` | 0 |" in card and "arXiv:2502.07316" in card
    assert str(tmp_path) not in card

    # The stage counters: tasks count functions in, verdicts drop nothing, datasets keep all.
    assert counters(instance, "prediction_tasks") == {"rows_in": 3, "kept": 6}
    assert counters(instance, "verdicts") == {
        "rows_in": 6,
        "kept": 6,
        "verdict_correct": 3,
        "verdict_wrong": 3,
    }
    for name in ("codeio_dataset", "codeio_pp_dataset"):
        assert counters(instance, name) == {"rows_in": 6, "kept": 6}, name


def test_without_revision_turns_only_codeio_is_built_and_published(
    tmp_path, scripted_llm, graph_files, stage_tables
):
    graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
    path = graph_files.write_config(
        tmp_path, scripted_llm.base_url, shard_size=10, extra="revision: {turns: 0}\n"
    )
    config = load_config(path)
    keys = {a.key.to_user_string() for a in build_assets(config)}
    assert {"codeio_dataset", "unified_dataset", "hub_publication"} <= keys
    assert not keys & {"codeio_pp_dataset", "responses_turn_1", "verdicts_turn_1"}
    names, instance = land(config)
    materialise(path, names, instance)

    t = stage_tables(config.data_dir, names, STAGES)
    assert "codeio_pp_dataset" not in t and "responses_turn_1" not in t
    assert t["codeio_dataset"].height == 4  # two functions, one task of each kind
    assert t["codeio_dataset"]["verdict_1"].value_counts().sort("verdict_1").rows() == [
        ("correct", 2),
        ("wrong", 2),
    ]
    # The wrong answers were not asked again: every request is a first turn.
    assert all(
        not any(m["role"] == "assistant" for m in r["messages"]) for r in scripted_llm.requests
    )
    published = tmp_path / "published"
    assert sorted(p.name for p in (published / "data").iterdir()) == ["codeio", "unified"]
    readme = (published / "README.md").read_text()
    header = yaml.safe_load(readme.split("---\n")[1])
    assert [c["config_name"] for c in header["configs"]] == ["codeio", "unified"]
    assert "| `codeio_rows` | 4 |" in readme
    assert "codeio_pp_rows" not in readme and "correct_after_revision" not in readme


def test_sensor_adds_a_shard_and_only_its_requests_reach_the_model(
    tmp_path, scripted_llm, graph_files
):
    graph_files.write_corpus(tmp_path / "corpus", ["a1", "a2", "b1", "b2"])
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=2)
    config = load_config(path)
    resources = build_resources(config, path)
    instance = dg.DagsterInstance.ephemeral()

    def tick():
        context = dg.build_sensor_context(
            instance=instance, resources={"codeio": resources["codeio"]}
        )
        result = raw_code_sensor(context)
        if isinstance(result, dg.SkipReason) or not result.run_requests:
            return []
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return [r.partition_key for r in result.run_requests]

    first = tick()
    assert first == ["t-00000", "t-00001"]
    materialise(path, first, instance)
    before = len(scripted_llm.requests)
    assert tick() == []  # nothing new, nothing added twice

    graph_files.write_corpus(tmp_path / "corpus", ["a1", "a2", "b1", "b2", "c1"])
    third = tick()
    assert third == ["t-00002"]
    materialise(path, third, instance)
    new_requests = scripted_llm.requests[before:]
    sent = json.dumps(new_requests)
    assert "def c1(" in sent
    for old in ("def a1(", "def a2(", "def b1(", "def b2("):
        assert old not in sent, f"{old} was sent again"
    # one refactor, two predictions, one revision (output prediction is wrong at first)
    assert len(new_requests) == 4

    # Re-materialising an old shard is served from the request cache.
    count = len(scripted_llm.requests)
    materialise(path, ["t-00000"], instance)
    assert len(scripted_llm.requests) == count

"""Blocking checks gate publication: a shard whose stage fails one is not published."""

from __future__ import annotations

import dagster as dg
import pytest

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.landing import Landing
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.shards import land_new_shards

pytestmark = pytest.mark.sandbox


def _run(path: str):
    config = load_config(path)
    names = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, names)
    (name,) = names
    result = dg.materialize(
        build_assets(config),
        partition_key=name,
        instance=instance,
        resources=build_resources(config, path),
        raise_on_error=False,
    )
    return result, instance


def _failed_checks(result) -> set[tuple[str, str]]:
    return {
        (e.asset_key.to_user_string(), e.check_name)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def test_a_shard_of_empty_files_stops_at_raw_code_and_publishes_nothing(
    tmp_path, scripted_llm, graph_files, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    for name in ("a", "b"):
        (tmp_path / "corpus" / f"{name}.py").write_text("")
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    result, instance = _run(path)
    assert not result.success
    assert _failed_checks(result) == {("raw_code", "non_empty")}
    assert {e.step_key for e in result.get_step_failure_events()} == {"raw_code"}
    assert scripted_llm.requests == []  # nothing downstream ran, not even the refactor
    assert not instance.get_materialized_partitions(dg.AssetKey("hub_publication"))
    assert not (tmp_path / "published").exists()


def test_failed_prediction_requests_keep_the_shard_off_the_hub(tmp_path, graph_files, monkeypatch):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    monkeypatch.chdir(tmp_path)

    def reply(messages):
        prompt = messages[0]["content"]
        return 500 if "## Given" in prompt else graph_files.reply_for(messages)

    llm = graph_files.ScriptedLLM(reply)
    try:
        graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
        path = graph_files.write_config(tmp_path, llm.base_url, shard_size=10)
        result, instance = _run(path)
    finally:
        llm.close()
    assert not result.success
    # The responses step fails, by the blocking check or by the stage's own bound (issue 9),
    # and nothing after it runs.
    assert {e.step_key for e in result.get_step_failure_events()} == {"responses"}
    assert _failed_checks(result) <= {("responses", "request_failure_rate")}
    assert instance.get_materialized_partitions(dg.AssetKey("unified_functions"))
    assert not instance.get_materialized_partitions(dg.AssetKey("codeio_dataset"))
    assert not instance.get_materialized_partitions(dg.AssetKey("hub_publication"))
    assert not (tmp_path / "published").exists()

"""Near-duplicates dropped by `unified_functions` across shards, through the assets."""

from __future__ import annotations

import dagster as dg
import polars as pl

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.landing import Landing
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.shards import land_new_shards


def test_renamed_copy_in_a_later_shard_is_dropped_and_a_rerun_keeps_its_own(
    tmp_path, monkeypatch, graph_files, stage_tables
):
    original = graph_files.REFACTOR_REPLY
    # The same function with other names and comments, refactored from the second shard's file.
    renamed = original.replace("total", "acc").replace(
        "for n in numbers:\n        acc += n",
        "for item in numbers:  # add each\n        acc += item",
    )
    assert "acc += item" in renamed
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    llm = graph_files.ScriptedLLM(lambda messages: renamed if "beta" in str(messages) else original)
    try:
        graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
        path = graph_files.write_config(
            tmp_path, llm.base_url, shard_size=1, extra="dedup: {enabled: true}\n"
        )
        config = load_config(path)
        first, second = (
            s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))
        )
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(shards.name, [first, second])
        graph, resources = build_assets(config), build_resources(config, path)

        def run(shard: str) -> pl.DataFrame:
            result = dg.materialize(
                graph,
                selection=["raw_code", "unified_functions"],
                partition_key=shard,
                instance=instance,
                resources=resources,
            )
            assert result.success
            return stage_tables(config.data_dir, [shard], ["unified_functions"])[
                "unified_functions"
            ]

        def counters() -> dict:
            event = instance.get_latest_materialization_event(dg.AssetKey("unified_functions"))
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}

        kept = run(first)
        assert kept["status"].to_list() == ["ok"]
        dropped = run(second)
        assert dropped["status"].to_list() == ["near_duplicate"]
        assert dropped["duplicate_of"].to_list() == kept["function_id"].to_list()
        meta = counters()
        assert (meta["kept"], meta["dropped_near_duplicate"]) == (0, 1)
        assert "near_duplicate" in meta["drop_reasons"] and first in meta["drop_reasons"]

        # Shard 1 again (after shard 2): compared with no earlier shard, not with itself.
        again = run(first)
        assert again["status"].to_list() == ["ok"]
        assert again["function_id"].to_list() == kept["function_id"].to_list()
        assert "dropped_near_duplicate" not in counters()
    finally:
        llm.close()

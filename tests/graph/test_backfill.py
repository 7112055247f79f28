"""A backfill over several shards, submitted and executed by Dagster as from the UI.

The backfill is launched with the UI's own GraphQL mutation against a real instance in a
temporary DAGSTER_HOME, with the code location served from `codeio_dagster.definitions` by a
gRPC code server. The daemons' own iterations (backfill, then run queue) are driven in-process,
because the daemon's loop intervals would spend the test budget on sleeping.
"""

from __future__ import annotations

import logging
import time

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_graphql.test.utils import execute_dagster_graphql

from codeio_dagster.assets import build_assets
from codeio_dagster.config import CONFIG_ENV, load_config
from codeio_dagster.funnel import add_funnels, shard_funnel, shard_funnels
from codeio_dagster.landing import Landing
from codeio_dagster.partitions import shards
from codeio_dagster.shards import land_new_shards
from codeio_dagster.versions import stale_by_shard

pytestmark = pytest.mark.sandbox

# The mutation the UI sends from "Materialize" with a partition range (LaunchAssetChoosePartitions).
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""
TERMINAL = {
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
    BulkActionStatus.COMPLETED,
}


def run_daemons_until_done(process_context, backfill_id: str, timeout_s: float = 420):
    """Alternate the backfill and run-queue daemon iterations until the backfill ends."""
    instance = process_context.instance
    logger = logging.getLogger("test_backfill_daemon")
    deadline = time.monotonic() + timeout_s
    try:
        with QueuedRunCoordinatorDaemon(interval_seconds=1) as queue_daemon:
            while time.monotonic() < deadline:
                errors = [e for e in execute_backfill_iteration(process_context, logger) if e]
                assert not errors, errors[0].to_string()
                list(queue_daemon.run_iteration(process_context))
                backfill = instance.get_backfill(backfill_id)
                if backfill.status in TERMINAL:
                    return backfill
                time.sleep(0.5)
        raise AssertionError(f"backfill {backfill_id} still {backfill.status} after {timeout_s}s")
    finally:
        # The code server waits for its runs before it exits; a failed test must not leave any.
        for run in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})):
            if not run.is_finished:
                instance.run_launcher.terminate(run.run_id)


def test_ui_backfill_over_shards_materialises_every_partition(
    tmp_path, scripted_llm, graph_files, monkeypatch
):
    graph_files.write_corpus(tmp_path / "corpus", ["p", "q", "r"])
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=1)
    config = load_config(path)
    names = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
    assert names == ["t-00000", "t-00001", "t-00002"]

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")  # the defaults `dagster dev` would use
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # The code server is a subprocess; it finds codeio.yaml the way `dagster dev` would.
    monkeypatch.setenv(CONFIG_ENV, path)
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(shards.name, names)
    target = ModuleTarget(
        module_name="codeio_dagster.definitions",
        attribute=None,
        working_directory=str(tmp_path),
        location_name="codeio",
    )
    with WorkspaceProcessContext(instance, target, version="") as process_context:
        request_context = process_context.create_request_context()
        errors = request_context.code_location_errors()
        assert not errors, errors[0].to_string()
        asset_graph = request_context.asset_graph
        keys = sorted(asset_graph.materializable_asset_keys, key=lambda k: k.to_user_string())
        launched = execute_dagster_graphql(
            request_context,
            LAUNCH_BACKFILL,
            {
                "backfillParams": {
                    "assetSelection": [{"path": k.path} for k in keys],
                    "partitionNames": names,
                }
            },
        ).data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = run_daemons_until_done(process_context, launched["backfillId"])

    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, [r.status for r in runs]
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert sorted(r.tags["dagster/partition"] for r in runs) == names
    for key in keys:
        assert instance.get_materialized_partitions(key) == set(names), key

    funnel = add_funnels(shard_funnel(instance, n, turns=1) for n in names)
    # Three one-file shards, each file one function with pairs and one task of each kind; the
    # script answers output predictions wrongly at turn 0 and rightly after feedback.
    assert funnel == {
        "raw_files": 3,
        "readable_files": 3,
        "functions": 3,
        "near_duplicate_functions": 0,
        "functions_with_pairs": 3,
        "io_pairs": funnel["io_pairs"],
        "tasks": 6,
        "replies_turn_0": 6,
        "truncated_turn_0": 0,
        "request_failed_turn_0": 0,
        "correct_turn_0": 3,
        "not_correct_turn_0": 3,
        "revision_replies": 3,
        "truncated_revision": 0,
        "request_failed_revision": 0,
        "fixed_by_revision": 3,
        "correct_after_revision": 6,
        "codeio_rows": 6,
        "codeio_pp_rows": 6,
        "unified_rows": 3,
    }
    assert funnel["io_pairs"] >= 2 * 3

    # Every shard's funnel and staleness come from two questions to the event log for all three
    # shards (their materialisations, and the asset records for wipe times), as one shard's do.
    asked: list[str] = []
    storage = instance._event_storage

    class Counted:
        def __getattr__(self, name):
            value = getattr(storage, name)
            if name.startswith(("get_", "fetch_")) and callable(value):
                asked.append(name)
            return value

    instance._event_storage = Counted()
    try:
        funnels = shard_funnels(instance, names, turns=1)
        assert sorted(asked) == ["get_asset_records", "get_event_records"], asked
        asked.clear()
        stale = stale_by_shard(instance, build_assets(config), names)
        assert sorted(asked) == ["get_asset_records", "get_event_records"], asked
    finally:
        instance._event_storage = storage
    assert funnels == {n: shard_funnel(instance, n, turns=1) for n in names}
    assert stale == dict.fromkeys(names, [])

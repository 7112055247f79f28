"""The cluster's Dagster instance (dagster.yaml from instance_yaml) on a real PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest

from codeio_dagster.cluster.instance import PARTITION_TAG, instance_yaml
from codeio_dagster.cluster.local import postgres


@pytest.fixture(scope="module")
def pg_server():
    with postgres(database="dagster") as server:
        yield server


def test_instance_loads_on_postgres_and_keeps_runs_across_a_restart(
    pg_server, tmp_path, monkeypatch
):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", pg_server.password)
    (tmp_path / "dagster.yaml").write_text(
        instance_yaml(
            pg_host="127.0.0.1",
            pg_port=pg_server.port,
            pg_user=pg_server.user,
            pg_db=pg_server.database,
            ray_address="http://127.0.0.1:8265",
        )
    )
    assert pg_server.password not in (tmp_path / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_launcher).__name__ == "RayRunLauncher"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        (limit,) = coordinator.get_run_queue_config().tag_concurrency_limits
        assert limit == {
            "key": PARTITION_TAG,
            "value": {"applyLimitPerUniqueValue": True},
            "limit": 1,
        }
        run = instance.create_run_for_job(_tiny, tags={PARTITION_TAG: "s-00000"})
    pg_server.restart()
    with dg.DagsterInstance.from_config(str(tmp_path)) as again:
        assert again.get_run_by_id(run.run_id).tags[PARTITION_TAG] == "s-00000"


@dg.op
def _noop() -> None:
    pass


@dg.job
def _tiny() -> None:
    _noop()

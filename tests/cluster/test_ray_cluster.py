"""The pipeline on a cluster: PostgreSQL instance and request cache, S3 data_dir, two Ray nodes,
runs launched by RayRunLauncher through the queued run coordinator and the Dagster daemon.

One cluster (everything on 127.0.0.1) serves the whole module; the stub OpenAI-compatible server
answers deterministically and counts every request it receives.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl
import pytest

from codeio_dagster import storage
from codeio_dagster.cluster.stack import DEMO_CORPUS, build_with_stub, local_cluster
from codeio_dagster.cluster.stub_llm import HOLD_MARKER

# Each published config and the column that identifies its rows.
CONFIGS = {"codeio": "task_id", "codeio_pp": "task_id", "unified": "function_id"}

# Several minutes for the three on 2 cores (one cluster start): `pytest -m "not ray"` skips them.
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    for path in sorted(DEMO_CORPUS.glob("*.py"))[:9]:
        shutil.copy(path, corpus / path.name)
    with local_cluster(corpus=corpus, shard_size=3) as running:
        running.corpus = corpus
        yield running


def _new_shard(cluster, name: str) -> str:
    """Add one raw file to the corpus and land it: a shard no run has worked on."""
    before = set(cluster.land())
    (cluster.corpus / f"{name}.py").write_text(f"def {name}(xs):\n    return sum(xs)\n")
    (new,) = set(cluster.land()) - before
    return new


def _published(root, shards) -> dict[str, pl.DataFrame]:
    out = {}
    for config, key in CONFIGS.items():
        frames = [storage.read_parquet(root / "data" / config / f"{s}.parquet") for s in shards]
        out[config] = pl.concat(frames).sort(key)
    return out


def _build_on_one_machine(tmp_path, corpus, shards) -> dict[str, pl.DataFrame]:
    """The same shards built in this process: local folders, SQLite cache, its own stub."""
    build_with_stub(tmp_path, corpus, shard_size=3, shards=shards)
    return _published(tmp_path / "data" / "published", shards)


def test_backfill_runs_on_both_nodes_matches_one_machine_and_reruns_send_nothing(cluster, tmp_path):
    shards = cluster.land()
    assert len(shards) == 3
    backfill = cluster.backfill(shards)
    runs = cluster.wait({"dagster/backfill": backfill}, len(shards))
    done = cluster.shard_runs(runs)
    assert [r.status for r in done] == ["SUCCESS"] * 3, done
    assert {r.shard for r in done} == set(shards)
    assert len({r.node for r in done}) == 2, done  # both Ray nodes ran shards
    sent = cluster.llm.requests()
    assert sent and len(sent) == len(set(sent))  # no request sent twice

    config = cluster.config()
    on_cluster = _published(storage.location(config.publish.local_dir), shards)
    on_one_machine = _build_on_one_machine(tmp_path, cluster.corpus, shards)
    for name in CONFIGS:
        assert on_cluster[name].height > 0, name
        assert on_cluster[name].equals(on_one_machine[name]), name

    # PostgreSQL restarted between runs: the instance keeps every run, the cache every reply.
    cluster.pg.restart()
    assert len(cluster.runs({"dagster/backfill": backfill})) == 3
    again = cluster.backfill(shards)
    rerun = cluster.shard_runs(cluster.wait({"dagster/backfill": again}, len(shards)))
    assert [r.status for r in rerun] == ["SUCCESS"] * 3, rerun
    assert cluster.llm.requests() == sent  # the second backfill sent zero LLM requests
    assert _published(storage.location(config.publish.local_dir), shards)["codeio"].equals(
        on_cluster["codeio"]
    )


def test_two_launches_of_one_shard_at_once_do_the_work_once(cluster):
    shard = _new_shard(cluster, "twice")
    sent_before = len(cluster.llm.requests())
    with ThreadPoolExecutor(2) as pool:  # two launches at once; a failed launch raises here
        ids = list(pool.map(lambda _: cluster.launch(shard), "ab"))
    runs = cluster.wait({"dagster/partition": shard}, 2)
    assert sorted(r.run_id for r in runs) == sorted(ids)
    assert [r.status.value for r in runs] == ["SUCCESS", "SUCCESS"]
    with cluster.instance() as instance:
        records = sorted(
            (instance.get_run_record_by_id(i) for i in ids), key=lambda r: r.start_time
        )
    # The queue admitted the second only after the first ended: never both at once.
    assert records[1].start_time >= records[0].end_time
    new = cluster.llm.requests()[sent_before:]
    assert new and len(new) == len(set(new))  # the first run sent each request once...
    from codeio_dagster.llm.cache import PostgresResponseCache

    with PostgresResponseCache(cluster.pg.dsn()) as cache:
        assert len(cache) == len(cluster.llm.requests())  # ...and the cache holds every reply


def test_a_killed_node_fails_its_run_and_a_rerun_completes_without_duplicates(cluster):
    # Its refactor request is held by the stub, so the node dies while the run is in a step.
    shard = _new_shard(cluster, HOLD_MARKER)
    victim = cluster.ray.add_node(victim=1)
    tags = {"dagster-ray/config": json.dumps({"resources": {"victim": 1}})}
    run_id = cluster.launch(shard, tags=tags)
    deadline = time.monotonic() + 600
    with cluster.instance() as instance:
        # Killed mid-run: once the run has materialised its first asset.
        while time.monotonic() < deadline:
            done = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_code"), asset_partitions=[shard]),
                limit=1,
            ).records
            if done:
                break
            assert not instance.get_run_by_id(run_id).is_finished, "finished before the kill"
            time.sleep(0.5)
        cluster.ray.kill_node(victim)
    (run,) = cluster.wait({"dagster/partition": shard}, 1, timeout=300)
    assert run.status.value == "FAILURE"  # not stuck in STARTED

    rerun_id = cluster.launch(shard)
    runs = {r.run_id: r for r in cluster.wait({"dagster/partition": shard}, 2)}
    assert runs[rerun_id].status.value == "SUCCESS"
    config = cluster.config()
    raw = storage.read_parquet(config.data_dir / "assets" / "raw_code" / f"{shard}.parquet")
    assert raw.height == 1
    published = _published(storage.location(config.publish.local_dir), [shard])
    for name in CONFIGS:
        assert published[name][CONFIGS[name]].is_unique().all(), name

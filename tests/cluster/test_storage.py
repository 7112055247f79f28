"""The storage layer on a local folder and on a real S3 API (moto server): same behaviour."""

from __future__ import annotations

import threading
import time

import boto3
import dagster as dg
import polars as pl
import pytest

from codeio_dagster import storage
from codeio_dagster.config import ConfigError, parse_config
from codeio_dagster.io_manager import PolarsParquetIOManager, partition_path


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return tmp_path / "data"
    server = request.getfixturevalue("s3")
    return storage.location(server.url(f"t{time.monotonic_ns()}"))


def _keys(server, prefix=""):
    """The bucket's keys as the S3 API lists them (boto3, not the code under test)."""
    client = boto3.client("s3", endpoint_url=server.endpoint)
    listed = client.list_objects_v2(Bucket=server.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_bytes_parquet_list_delete(root):
    a, b = root / "x" / "a.bin", root / "x" / "y" / "b.parquet"
    assert not storage.exists(a)
    with pytest.raises(FileNotFoundError, match="a.bin"):
        storage.read_bytes(a)
    assert storage.write_bytes(a, b"one")
    assert storage.read_bytes(a) == b"one"
    assert not storage.write_bytes(a, b"two", if_absent=True)  # taken: left alone
    assert storage.read_bytes(a) == b"one"
    assert storage.write_bytes(a, b"two")
    assert storage.read_bytes(a) == b"two"
    frame = pl.DataFrame({"k": [1, 2], "v": ["p", "q"]})
    storage.write_parquet(frame, b)
    assert storage.read_parquet(b).equals(frame)
    assert storage.read_parquet(b, columns=["v"]).columns == ["v"]
    assert storage.list_files(root / "x") == ["a.bin", "y/b.parquet"]
    assert storage.list_files(root / "x", ".parquet") == ["y/b.parquet"]
    storage.delete(a)
    storage.delete(a)  # nothing there is fine
    assert not storage.exists(a) and storage.list_files(root / "x") == ["y/b.parquet"]


def test_s3_writes_are_single_objects_without_temp_names(s3):
    root = storage.location(s3.url("single"))
    storage.write_parquet(pl.DataFrame({"k": [1]}), root / "t.parquet")
    storage.write_bytes(root / "t.parquet", b"x", if_absent=True)
    assert _keys(s3, "single/") == ["single/t.parquet"]


def test_exclusive_serialises_read_modify_write(root):
    """Four writers each add 1 four times to a counter; no increment may be lost."""
    counter, lock = root / "counter", root / "_counter.lock"
    storage.write_bytes(counter, b"0")

    def work():
        for _ in range(4):
            with storage.exclusive(lock, poll_s=0.01):
                value = int(storage.read_bytes(counter))
                time.sleep(0.002)  # widen the window a missing lock would lose updates in
                storage.write_bytes(counter, str(value + 1).encode())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(storage.read_bytes(counter)) == 16


def test_s3_lease_of_a_dead_holder_is_taken_over_after_ttl(s3):
    lock = storage.location(s3.url("stale")) / "_x.lock"
    storage.write_bytes(lock, b'{"owner": "a process that died"}')
    got = []

    def take():
        with storage.exclusive(lock, ttl_s=0.5, poll_s=0.05):
            got.append(storage.read_bytes(lock))

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    assert len(got) == 1 and b"died" not in got[0]  # the waiter wrote its own lease
    assert not storage.exists(lock)  # and released it


def test_s3_lease_held_and_renewed_is_not_taken_over(s3):
    lock = storage.location(s3.url("held")) / "_x.lock"
    order = []
    with storage.exclusive(lock, ttl_s=0.4, poll_s=0.05):

        def waiter():
            with storage.exclusive(lock, ttl_s=0.4, poll_s=0.05):
                order.append("waiter")

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(1.5)  # several ttls: the holder renews, so the waiter must still wait
        order.append("holder done")
    thread.join(10)
    assert order == ["holder done", "waiter"]
    assert not storage.exists(lock)


def test_io_manager_stores_partitions_on_s3(s3):
    parts = dg.StaticPartitionsDefinition(["s-00000", "s-00001"])

    @dg.asset(partitions_def=parts)
    def up(context) -> pl.DataFrame:
        return pl.DataFrame({"shard": [context.partition_key], "n": [1]})

    @dg.asset(partitions_def=parts)
    def down(up: pl.DataFrame) -> pl.DataFrame:
        return up.with_columns(n=pl.col("n") + 1)

    base = s3.url("run/assets")
    for key in parts.get_partition_keys():
        result = dg.materialize(
            [up, down],
            partition_key=key,
            resources={"io_manager": PolarsParquetIOManager(base_dir=base)},
        )
        assert result.success
    assert _keys(s3, "run/") == [
        "run/assets/down/s-00000.parquet",
        "run/assets/down/s-00001.parquet",
        "run/assets/up/s-00000.parquet",
        "run/assets/up/s-00001.parquet",
    ]
    stored = storage.read_parquet(partition_path(base, "down", "s-00001"))
    assert stored.to_dicts() == [{"shard": "s-00001", "n": 2}]


def test_config_data_dir_url(tmp_path):
    base = {"sources": [{"name": "a", "kind": "folder", "options": {"path": "."}}]}
    config = parse_config({**base, "data_dir": "s3://bkt/some/prefix/"}, base_dir=tmp_path)
    assert config.data_dir == storage.ObjectPath("s3://bkt/some/prefix")
    assert str(config.data_dir / "landing") == "s3://bkt/some/prefix/landing"
    assert parse_config({**base, "data_dir": "d"}, base_dir=tmp_path).data_dir == tmp_path / "d"
    with pytest.raises(ConfigError, match=r"data_dir.*unsupported scheme 'gs'"):
        parse_config({**base, "data_dir": "gs://bkt/p"}, base_dir=tmp_path)


def test_publisher_on_s3_keeps_every_parallel_shards_record(s3):
    import json

    from codeio_dagster.publish import CardInfo, LocalFolderPublisher, PublishSettings
    from tests.publish.conftest import _make_tables

    url = s3.url("pub")
    shards = ["p0", "p1", "p2"]
    barrier = threading.Barrier(len(shards))
    errors = []

    def publish(i, shard):
        tables = _make_tables(shard, 2 + i)
        barrier.wait()
        try:
            LocalFolderPublisher(settings=PublishSettings(local_dir=url)).publish_partition(
                shard, tables, CardInfo(funnel={"samples": 2 + i})
            )
        except Exception as err:  # reported below with the shard
            errors.append((shard, err))

    threads = [threading.Thread(target=publish, args=(i, s)) for i, s in enumerate(shards)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    root = storage.location(url)
    summary = json.loads(storage.read_bytes(root / "stats" / "summary.json"))
    assert summary["shards"] == 3 and summary["rows"]["codeio"] == 9
    records = {
        s: json.loads(storage.read_bytes(root / "stats" / "shards" / f"{s}.json")) for s in shards
    }
    assert {s: r["rows"]["codeio"] for s, r in records.items()} == {"p0": 2, "p1": 3, "p2": 4}
    data = [f"pub/data/{c}/{s}.parquet" for c in ("codeio", "codeio_pp", "unified") for s in shards]
    stats = [f"pub/stats/shards/{s}.json" for s in shards]
    assert _keys(s3, "pub/") == sorted(
        [*data, *stats, "pub/.gitattributes", "pub/README.md", "pub/stats/summary.json"]
    )
    assert "| samples | `samples` | 9 |" in storage.read_bytes(root / "README.md").decode()

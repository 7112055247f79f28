"""The hub_publication asset materialised by Dagster, and the Hub raw-code source."""

from __future__ import annotations

import io
import json
import logging
import os

import dagster as dg
import polars as pl
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from codeio_dagster.assets.hub_publication import build_hub_publication
from codeio_dagster.partitions import shards
from codeio_dagster.publish import HubPublisher, LocalFolderPublisher, PublishSettings
from codeio_dagster.sources.hub import HubSource


def _upstream(tables: dict[str, pl.DataFrame]) -> list[dg.AssetsDefinition]:
    def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
        @dg.asset(name=name, partitions_def=shards, io_manager_key="mem")
        def _asset() -> pl.DataFrame:
            return frame

        return _asset

    names = {"codeio": "codeio_dataset", "codeio_pp": "codeio_pp_dataset"}
    names["unified"] = "unified_dataset"
    return [stand_in(names[k], v) for k, v in tables.items()]


def _materialize(tables, publisher, shard="s7"):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", [shard])
    result = dg.materialize(
        [*_upstream(tables), build_hub_publication()],
        partition_key=shard,
        instance=instance,
        resources={"publisher": publisher, "mem": dg.InMemoryIOManager()},
    )
    assert result.success
    (event,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("hub_publication")
    ]
    return {k: v.value for k, v in event.metadata.items()}


def test_asset_publishes_to_the_hub(hub, make_tables, caplog):
    caplog.set_level(logging.DEBUG)
    tables = make_tables("s7", 4)
    publisher = HubPublisher(
        settings=PublishSettings(target="hub", repo_id="o/assets", endpoint=hub.url),
        token=dg.EnvVar("HF_TOKEN"),
    )
    meta = _materialize(tables, publisher)
    assert meta["revision"] == hub.state.head("dataset", "o/assets")
    assert meta["rows/codeio"] == 4 and meta["rows/codeio_pp"] == 3 and meta["rows/unified"] == 2
    assert "data/codeio_pp/s7.parquet" in meta["files"]
    readme = hub.files("o/assets")["README.md"].decode()
    # funnel computed from the row counts received
    assert "| codeio_pp rows | `codeio_pp_rows` | 3 |" in readme
    planted = os.environ["HF_TOKEN"]
    assert planted not in json.dumps(meta, default=str)
    assert not [r for r in caplog.records if planted in r.getMessage()]


def test_asset_publishes_to_a_local_folder(make_tables, tmp_path):
    meta = _materialize(
        make_tables("s7", 2),
        LocalFolderPublisher(settings=PublishSettings(local_dir=str(tmp_path / "out"))),
    )
    assert meta["target"] == "local" and meta["rows/codeio"] == 2
    assert (tmp_path / "out" / "data" / "unified" / "s7.parquet").exists()


def _upload_raw_code(hub, repo: str) -> tuple[str, str]:
    api = HfApi(endpoint=hub.url)
    api.create_repo(repo, repo_type="dataset")
    frame = pl.DataFrame({"path": ["a.py", "b.py"], "content": ["print(1)\n", "x = 2\n"]})
    buf = io.BytesIO()
    frame.write_parquet(buf)
    jsonl = b'{"path": "c.py", "content": "def f():\\n    return 3\\n"}\n'
    ops = [
        CommitOperationAdd("data/part-0.parquet", buf.getvalue()),
        CommitOperationAdd("extra/more.jsonl", jsonl),
    ]
    first = api.create_commit(repo, ops, commit_message="raw", repo_type="dataset").oid
    later = api.create_commit(
        repo,
        [CommitOperationAdd("extra/late.jsonl", b'{"path": "d.py", "content": "y = 4\\n"}\n')],
        commit_message="more",
        repo_type="dataset",
    ).oid
    return first, later


def test_hub_source_reads_a_pinned_revision(hub, tmp_path):
    first, later = _upload_raw_code(hub, "o/raw")
    cache = str(tmp_path / "cache")
    pinned = HubSource(
        HubSource.Options(repo_id="o/raw", revision=first, files="**/*.jsonl", cache_dir=cache)
    )
    assert [(f.path, f.content) for f in pinned.scan()] == [
        ("extra/more.jsonl:0:c.py", b"def f():\n    return 3\n")
    ]
    assert pinned.provenance()["revision"] == first

    branch = HubSource(HubSource.Options(repo_id="o/raw", files="data/*.parquet", cache_dir=cache))
    files = list(branch.scan())
    assert [f.path for f in files] == ["data/part-0.parquet:0:a.py", "data/part-0.parquet:1:b.py"]
    assert files[1].content == b"x = 2\n"
    assert files[0].origin == {
        "repo_id": "o/raw",
        "revision": later,
        "file": "data/part-0.parquet",
        "row": 0,
    }
    assert branch.provenance() | {"requested_revision": "main"} == branch.provenance()
    assert branch.provenance()["revision"] == later


def test_hub_source_names_a_missing_column(hub, tmp_path):
    first, _ = _upload_raw_code(hub, "o/raw2")
    source = HubSource(
        HubSource.Options(
            repo_id="o/raw2", revision=first, files="**/*.jsonl", content_column="code"
        )
    )
    with pytest.raises(KeyError, match=r"no column\(s\) \['code'\]"):
        list(source.files())
    with pytest.raises(ValueError, match="must look like 'owner/name'"):
        HubSource.Options(repo_id="raw")


def test_hub_rows_sharing_a_path_or_missing_one_all_land_with_a_status(hub, tmp_path):
    from codeio_dagster.landing import Landing
    from codeio_dagster.rawcode import classify_landed
    from codeio_dagster.shards import plan_shards

    api = HfApi(endpoint=hub.url)
    api.create_repo("o/raw3", repo_type="dataset")

    def table(paths, contents):
        buf = io.BytesIO()
        pl.DataFrame(
            {"path": paths, "content": contents}, schema={"path": pl.String, "content": pl.String}
        ).write_parquet(buf)
        return buf.getvalue()

    ops = [
        CommitOperationAdd("a.parquet", table(["setup.py", None], ["x = 1\n", "y = 2\n"])),
        CommitOperationAdd("b.parquet", table(["setup.py", "gone.py"], ["x = 3\n", None])),
    ]
    api.create_commit("o/raw3", ops, commit_message="raw", repo_type="dataset")
    source = HubSource(HubSource.Options(repo_id="o/raw3", cache_dir=str(tmp_path / "cache")))

    files = list(source.scan())
    assert [f.path for f in files] == [
        "a.parquet:0:setup.py",
        "a.parquet:1",
        "b.parquet:0:setup.py",
        "b.parquet:1:gone.py",
    ]
    (shard,) = plan_shards(files, source="h", index=Landing(tmp_path).index(), shard_size=10)
    frame = classify_landed(shard.rows, max_bytes=1000)
    assert dict(zip(frame["path"], frame["status"], strict=True)) == {
        "a.parquet:0:setup.py": "ok",
        "a.parquet:1": "ok",
        "b.parquet:0:setup.py": "ok",
        "b.parquet:1:gone.py": "empty",
    }

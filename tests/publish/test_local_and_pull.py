"""The local-folder publisher, the `codeio pull` command and the settings that pick a publisher."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from codeio_dagster.cli import main as codeio_main
from codeio_dagster.publish import (
    CardInfo,
    HubPublisher,
    LocalFolderPublisher,
    PublishSettings,
    publisher_from_settings,
)


def test_local_folder_loads_with_datasets(make_tables, tmp_path):
    import datasets

    folder = tmp_path / "published"
    publisher = LocalFolderPublisher(settings=PublishSettings(local_dir=str(folder)))
    first, second = make_tables("a", 3), make_tables("b", 2)
    publisher.publish_partition("a", first, CardInfo(funnel={"samples": 3}))
    publisher.publish_partition("b", second, CardInfo(funnel={"samples": 2}))

    ds = datasets.load_dataset(
        str(folder), "codeio_pp", split="train", cache_dir=str(tmp_path / "c")
    )
    got = pl.from_arrow(ds.data.table).sort("id")
    want = pl.concat([first["codeio_pp"], second["codeio_pp"]]).sort("id")
    assert got.to_dicts() == want.to_dicts()
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")) == [
        f"data/{c}/{s}.parquet" for c in ("codeio", "codeio_pp", "unified") for s in ("a", "b")
    ]
    readme = (folder / "README.md").read_text()
    assert "| samples | `samples` | 5 |" in readme and "`a`" in readme and "`b`" in readme
    assert not list(folder.rglob("*.tmp")) and "codeio pull" not in readme


def _publish_in_child(folder: str, shard: str, tables, barrier) -> None:
    # All children publish at once, so each reads the stats index while the others are
    # publishing too: the interleaving parallel runs produce.
    barrier.wait(timeout=300)
    LocalFolderPublisher(settings=PublishSettings(local_dir=folder)).publish_partition(
        shard, tables, CardInfo(funnel={"samples": tables["codeio"].height})
    )


def test_parallel_processes_keep_every_shards_stats_record(make_tables, tmp_path, monkeypatch):
    # spawn, not fork: forking after polars has started its thread pool can deadlock. A spawned
    # child imports this module by name, so the project root must be on the inherited path.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    ctx = multiprocessing.get_context("spawn")
    folder = tmp_path / "published"
    shards = [f"p{i}" for i in range(3)]
    barrier = ctx.Barrier(len(shards))
    children = [
        ctx.Process(target=_publish_in_child, args=(str(folder), s, make_tables(s, 2 + i), barrier))
        for i, s in enumerate(shards)
    ]
    for child in children:
        child.start()
    for child in children:
        # A hang guard only; the outcome checked is the exit code.
        child.join(timeout=300)
    assert [c.exitcode for c in children] == [0] * len(shards)

    summary = json.loads((folder / "stats" / "summary.json").read_text())
    assert summary["shards"] == len(shards)
    assert summary["rows"]["codeio"] == sum(2 + i for i in range(len(shards)))
    records = {
        s: json.loads((folder / "stats" / "shards" / f"{s}.json").read_text()) for s in shards
    }
    assert {s: r["rows"]["codeio"] for s, r in records.items()} == {
        s: 2 + i for i, s in enumerate(shards)
    }
    readme = (folder / "README.md").read_text()
    assert all(f"`{s}`" in readme for s in shards)
    assert f"| samples | `samples` | {sum(2 + i for i in range(len(shards)))} |" in readme
    assert len(list(folder.rglob("*.parquet"))) == 3 * len(shards)
    assert not list(folder.rglob("*.tmp"))


def test_bad_shard_and_table_inputs_are_named(tmp_path, make_tables):
    publisher = LocalFolderPublisher(settings=PublishSettings(local_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"shard key '\.\./x'"):
        publisher.publish_partition("../x", make_tables("x", 1), CardInfo())
    with pytest.raises(TypeError, match="table 'codeio' must be a polars DataFrame"):
        publisher.publish_partition("x", {"codeio": [1, 2]}, CardInfo())


def test_pull_downloads_a_pinned_revision(hub, make_tables, tmp_path, capsys):
    publisher = HubPublisher(
        settings=PublishSettings(target="hub", repo_id="o/d", endpoint=hub.url),
        token=os.environ["HF_TOKEN"],
    )
    first = publisher.publish_partition("s1", make_tables("s1", 3), CardInfo())
    publisher.publish_partition("s2", make_tables("s2", 2), CardInfo())

    out = tmp_path / "pinned"
    args = ["pull", "o/d", "--config", "codeio_pp", "--revision", first.revision, "--out", str(out)]
    assert codeio_main(args) == 0
    assert f"revision: {first.revision}" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "data/codeio_pp/s1.parquet"
    ]
    assert pl.read_parquet(out / "data/codeio_pp/s1.parquet").height == 2

    latest = tmp_path / "latest"
    assert codeio_main(["pull", "o/d", "--out", str(latest)]) == 0  # endpoint from HF_ENDPOINT
    printed = capsys.readouterr().out
    assert f"revision: {hub.state.head('dataset', 'o/d')}" in printed
    assert len(list(latest.rglob("*.parquet"))) == 6

    assert codeio_main(["pull", "o/d", "--config", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "configs present: ['codeio', 'codeio_pp', 'unified']" in capsys.readouterr().err


def test_settings_validate_and_pick_the_publisher(tmp_path):
    with pytest.raises(ValidationError, match="must look like 'owner/name'"):
        PublishSettings(target="hub", repo_id="no-slash")
    with pytest.raises(ValidationError, match="repo_id is not set"):
        PublishSettings(target="hub")
    with pytest.raises(ValidationError, match="extra"):
        PublishSettings(token="hf_x")
    local = publisher_from_settings(PublishSettings(local_dir=str(tmp_path / "out")))
    assert isinstance(local, LocalFolderPublisher) and local.settings.local_dir == f"{tmp_path}/out"
    hub = publisher_from_settings(PublishSettings(target="hub", repo_id="o/d", license="mit"))
    assert isinstance(hub, HubPublisher) and hub.repo_id == "o/d" and hub.settings.license == "mit"

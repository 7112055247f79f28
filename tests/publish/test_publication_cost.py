"""Publishing one shard costs the same however many shards were published before it."""

from __future__ import annotations

import os
import re

import pytest

from codeio_dagster.publish import CardInfo, HubPublisher, LocalFolderPublisher, PublishSettings
from codeio_dagster.publish import resources as publish_resources


def _size(data: bytes | None) -> int:
    """The size of a text with every number written as 0: counts grow, the layout must not."""
    return len(re.sub(rb"\d+", b"0", data or b""))


def _shape(shard: str, traffic: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    # The shard's own tables are left out: their size is the shard's, not the repo's.
    return sorted(
        (kind, path.replace(shard, "<shard>"), size)
        for kind, path, size in traffic
        if not path.startswith("data/")
    )


def test_local_publication_reads_and_writes_the_same_however_many_shards(
    tmp_path, make_tables, monkeypatch
):
    traffic: list[tuple[str, str, int]] = []
    read, write = publish_resources._read_file, publish_resources._write_atomic

    def spy_read(path):
        data = read(path)
        traffic.append(("read", path.relative_to(tmp_path).as_posix(), _size(data)))
        return data

    def spy_write(path, data):
        traffic.append(("write", path.relative_to(tmp_path).as_posix(), _size(data)))
        write(path, data)

    monkeypatch.setattr(publish_resources, "_read_file", spy_read)
    monkeypatch.setattr(publish_resources, "_write_atomic", spy_write)
    publisher = LocalFolderPublisher(settings=PublishSettings(local_dir=str(tmp_path)))
    shapes = {}
    for i in range(40):
        shard = f"s{i:04d}"
        traffic.clear()
        publisher.publish_partition(shard, make_tables(shard, 2), CardInfo(funnel={"raw": 5}))
        shapes[i] = _shape(shard, traffic)
    assert shapes[12] == shapes[39]
    assert {p for kind, p, _ in shapes[39] if kind == "read"} == {
        "stats/summary.json",
        "stats/shards/<shard>.json",
    }


@pytest.mark.usefixtures("hub")
def test_hub_commit_holds_one_shard_and_reads_no_listing(hub, make_tables, monkeypatch):
    from huggingface_hub import HfApi

    calls: list[str] = []
    commits: list[list[tuple[str, int]]] = []

    class CountingApi(HfApi):
        def repo_info(self, *args, **kwargs):
            calls.append("repo_info")
            return super().repo_info(*args, **kwargs)

        def list_repo_files(self, *args, **kwargs):
            calls.append("list_repo_files")
            return super().list_repo_files(*args, **kwargs)

        def create_commit(self, repo_id, operations, **kwargs):
            commits.append(
                [(op.path_in_repo, _size(getattr(op, "path_or_fileobj", b""))) for op in operations]
            )
            return super().create_commit(repo_id, operations, **kwargs)

    publisher = HubPublisher(
        settings=PublishSettings(
            target="hub", repo_id="codeio/cost", endpoint=hub.url, retry_base_seconds=0
        ),
        token=os.environ["HF_TOKEN"],
    )
    monkeypatch.setattr(
        HubPublisher,
        "api",
        lambda self: CountingApi(endpoint=self.resolved_endpoint(), token=self.token),
    )
    publisher.publish_partition("s0000", make_tables("s0000", 2), CardInfo())
    assert calls == ["repo_info"]  # a new repo has no summary yet: its head comes from its info
    calls.clear()
    for i in range(1, 15):
        publisher.publish_partition(f"s{i:04d}", make_tables(f"s{i:04d}", 2), CardInfo())
    assert calls == []

    def shape(i: int):
        shard = f"s{i:04d}"
        return sorted(
            (path.replace(shard, "<shard>"), size)
            for path, size in commits[i]
            if not path.startswith("data/")
        )

    assert shape(12) == shape(14)
    assert [p for p, _ in shape(14)] == [
        "README.md",
        "stats/shards/<shard>.json",
        "stats/summary.json",
    ]


def test_a_folder_with_the_old_single_index_is_converted_once(tmp_path, make_tables):
    import json

    from codeio_dagster.publish.stats import shard_stats

    old = {s: shard_stats(s, make_tables(s, 3), CardInfo(funnel={"raw": 7})) for s in ("a", "b")}
    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "shards.json").write_text(json.dumps({"shards": old}))
    publisher = LocalFolderPublisher(settings=PublishSettings(local_dir=str(tmp_path)))
    publisher.publish_partition("b", make_tables("b", 1), CardInfo(funnel={"raw": 2}))

    assert not (tmp_path / "stats" / "shards.json").exists()
    summary = json.loads((tmp_path / "stats" / "summary.json").read_text())
    assert summary["shards"] == 2 and summary["funnel"] == {"raw": 9}
    assert summary["rows"]["codeio"] == 3 + 1
    record = json.loads((tmp_path / "stats" / "shards" / "a.json").read_text())
    assert record == old["a"]

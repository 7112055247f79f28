"""Sensor ticks: one that finds nothing new reads no raw file; a changed source lands a shard."""

from __future__ import annotations

import os
import pathlib

import dagster as dg
import pytest

from codeio_dagster.config import load_config
from codeio_dagster.resources import build_resources
from codeio_dagster.sensors.raw_code_sensor import raw_code_sensor


def test_unchanged_source_tick_reads_nothing_and_a_new_file_lands(
    tmp_path, graph_files, monkeypatch
):
    corpus = tmp_path / "corpus"
    graph_files.write_corpus(corpus, ["a1", "a2", "b1"])
    path = graph_files.write_config(tmp_path, "http://127.0.0.1:9/v1", shard_size=2)
    resources = build_resources(load_config(path), path)
    instance = dg.DagsterInstance.ephemeral()

    opened: list[str] = []
    real_open = pathlib.Path.open

    def counted_open(p, mode="r", *args, **kwargs):
        if str(p).startswith(str(corpus)) and not set(mode) & set("wax+"):
            opened.append(pathlib.Path(p).name)
        return real_open(p, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", counted_open)
    real_os_open = os.open

    def counted_os_open(p, flags, *args, **kwargs):
        if str(p).startswith(str(corpus)) and not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            opened.append(pathlib.Path(p).name)
        return real_os_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", counted_os_open)

    def tick():
        opened.clear()
        context = dg.build_sensor_context(
            instance=instance, resources={"codeio": resources["codeio"]}
        )
        result = raw_code_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return [r.partition_key for r in result.run_requests or []], result.skip_reason

    assert tick() == (["t-00000", "t-00001"], None)
    assert sorted(opened) == ["a1.py", "a2.py", "b1.py"]

    for _ in range(2):
        keys, skipped = tick()
        assert (keys, opened) == ([], [])
        assert skipped and "no new raw code" in str(skipped)

    graph_files.write_corpus(corpus, ["c1"])  # writes c1.py; the old files stay as they are
    assert tick() == (["t-00002"], None)
    assert opened == ["c1.py"]
    assert instance.get_dynamic_partitions("shards") == ["t-00000", "t-00001", "t-00002"]
    assert tick()[0] == [] and opened == []


def _two_source_config(tmp_path, graph_files):
    """The graph config with a second source, `broken`, whose folder is gone after loading."""
    path = graph_files.write_config(tmp_path, "http://127.0.0.1:9/v1", shard_size=2)
    text = pathlib.Path(path).read_text()
    good = '  - {name: t, kind: folder, options: {path: corpus, glob: "*.py"}}\n'
    broken = '  - {name: broken, kind: folder, options: {path: later, glob: "*.py"}}\n'
    assert good in text
    pathlib.Path(path).write_text(text.replace(good, good + broken))
    # The folder exists when the definitions load (paths are checked then) and is gone by the
    # first tick, like an unmounted share.
    (tmp_path / "later").mkdir()
    codeio = build_resources(load_config(path), path)["codeio"]
    (tmp_path / "later").rmdir()
    return codeio


def _tick(instance, codeio):
    context = dg.build_sensor_context(instance=instance, resources={"codeio": codeio})
    result = raw_code_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return [r.partition_key for r in result.run_requests or []]


def test_a_failing_source_does_not_hold_back_the_shards_of_a_good_one(tmp_path, graph_files):
    graph_files.write_corpus(tmp_path / "corpus", ["a1", "a2", "b1"])
    codeio = _two_source_config(tmp_path, graph_files)
    instance = dg.DagsterInstance.ephemeral()

    assert _tick(instance, codeio) == ["t-00000", "t-00001"]
    assert instance.get_dynamic_partitions("shards") == ["t-00000", "t-00001"]
    # Nothing new and the source still broken: the tick fails, naming the source.
    with pytest.raises(RuntimeError, match=r"broken: FileNotFoundError"):
        _tick(instance, codeio)

    graph_files.write_corpus(tmp_path / "later", ["c1"])
    assert _tick(instance, codeio) == ["broken-00000"]


def test_shards_landed_by_a_failed_tick_are_requested_by_the_next(tmp_path, graph_files):
    from codeio_dagster.shards import land_new_shards

    graph_files.write_corpus(tmp_path / "corpus", ["a1", "a2", "b1"])
    codeio = _two_source_config(tmp_path, graph_files)
    instance = dg.DagsterInstance.ephemeral()
    # As a tick that raised after landing: shards indexed, no partition or run for them.
    with pytest.raises(FileNotFoundError):
        land_new_shards(codeio.config, codeio.landing())
    assert codeio.landing().shards()["shard"].unique().sort().to_list() == ["t-00000", "t-00001"]

    assert _tick(instance, codeio) == ["t-00000", "t-00001"]
    assert instance.get_dynamic_partitions("shards") == ["t-00000", "t-00001"]


def test_the_sources_counters_and_provenance_reach_raw_codes_metadata(tmp_path, graph_files):
    from codeio_dagster.assets.raw_code import raw_code

    graph_files.write_corpus(tmp_path / "corpus", ["a1", "a2", "b1"])
    (tmp_path / "corpus" / "big.py").write_text("x = 1\n" * 100)  # after b1.py in glob order
    path = pathlib.Path(graph_files.write_config(tmp_path, "http://127.0.0.1:9/v1", shard_size=2))
    path.write_text(path.read_text().replace("{size: 2}", "{size: 2, max_file_bytes: 300}"))
    codeio = build_resources(load_config(path), str(path))["codeio"]
    instance = dg.DagsterInstance.ephemeral()
    assert _tick(instance, codeio) == ["t-00000", "t-00001"]

    def source_metadata(shard: str) -> dict:
        result = dg.materialize(
            [raw_code], partition_key=shard, resources={"codeio": codeio}, instance=instance
        )
        (event,) = result.asset_materializations_for_node("raw_code")
        meta = {k: getattr(v, "value", v) for k, v in event.metadata.items()}
        return {k: v for k, v in meta.items() if k.startswith("source.")}

    first, second = source_metadata("t-00000"), source_metadata("t-00001")
    # The folder source rejected big.py from its size while filling the second shard.
    assert {
        k: v for k, v in second.items() if k not in ("source.seconds", "source.provenance")
    } == {
        "source.rows_in": 2,
        "source.kept": 1,
        "source.dropped_oversized": 1,
        "source.rows_landed": 2,
    }
    assert first["source.rows_in"] == first["source.kept"] == first["source.rows_landed"] == 2
    assert "source.dropped_oversized" not in first
    for meta in (first, second):
        assert isinstance(meta["source.seconds"], float) and meta["source.seconds"] >= 0
        assert meta["source.provenance"] == {
            "source": "folder",
            "path": str(tmp_path / "corpus"),
            "glob": "*.py",
        }

    # A later tick's shard counts only what that tick read.
    graph_files.write_corpus(tmp_path / "corpus", ["c1"])
    assert _tick(instance, codeio) == ["t-00002"]
    third = source_metadata("t-00002")
    assert (third["source.rows_in"], third["source.kept"], third["source.rows_landed"]) == (1, 1, 1)

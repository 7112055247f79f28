"""Sensor ticks: one that finds nothing new reads no raw file; a changed source lands a shard."""

from __future__ import annotations

import pathlib

import dagster as dg

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

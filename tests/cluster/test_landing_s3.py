"""Landing on object storage: two processes landing at once into one S3 landing lose nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from codeio_dagster import storage
from codeio_dagster.landing import Landing

_LAND = """
import sys
from codeio_dagster.config import load_config
from codeio_dagster.landing import Landing
from codeio_dagster.shards import land_new_shards
config, landing = load_config(sys.argv[1]), Landing(sys.argv[2])
for _ in range(int(sys.argv[3])):
    land_new_shards(config, landing, max_shards=1)
"""


def test_two_processes_landing_at_once_on_s3_land_every_file_once(tmp_path, s3):
    (tmp_path / "raw" / "py").mkdir(parents=True)
    for i in range(8):
        (tmp_path / "raw" / "py" / f"f{i}.py").write_text(f"def f{i}():\n    return {i}\n")
    (tmp_path / "raw" / "jl").mkdir()
    lines = [json.dumps({"content": f"def j{i}():\n    return {i}\n"}) for i in range(8)]
    (tmp_path / "raw" / "jl" / "0.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "codeio.yaml"
    sources = [
        {"name": "py", "kind": "folder", "options": {"path": "raw/py"}},
        {"name": "jl", "kind": "jsonl", "options": {"path": "raw/jl"}},
    ]
    config.write_text(json.dumps({"sources": sources, "shards": {"size": 1}}))
    url = s3.url("landing-race")
    command = [sys.executable, "-c", _LAND, str(config), url, "10"]
    env = {**os.environ, **s3.env()}
    workers = [subprocess.Popen(command, env=env) for _ in range(2)]
    assert [w.wait(300) for w in workers] == [0, 0]

    landing = Landing(url)
    index = landing.index()
    assert index.height == 16
    assert index.select("source", "path").is_duplicated().sum() == 0
    assert index["shard"].n_unique() == 16
    assert all(landing.read(s).height == 1 for s in index["shard"])
    files = storage.list_files(storage.location(url))
    landed = [f for f in files if not f.startswith("_index/")]
    expected = [f"{s}.parquet" for s in index["shard"]] + [
        f"_records/{s}.json" for s in index["shard"]
    ]
    assert sorted(landed) == sorted([*expected, "_units.parquet"])
    assert any(f.startswith("_index/") for f in files)

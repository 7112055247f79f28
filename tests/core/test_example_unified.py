"""examples/unified/codeio.yaml loads, and every function of its two tables imports cleanly."""

from __future__ import annotations

import json
import shutil

from codeio_dagster.config import load_config
from codeio_dagster.imported import import_function
from codeio_dagster.sources import build_source


def test_the_example_config_lands_functions_that_import(tmp_path, project_root):
    # A copy, so that nothing is written into the repository.
    shutil.copytree(project_root / "examples" / "unified", tmp_path / "unified")
    config = load_config(tmp_path / "unified" / "codeio.yaml")
    assert [s.kind for s in config.sources] == ["unified", "unified"]
    results = {}
    for source_config in config.sources:
        for raw in build_source(source_config).scan():
            assert raw.rejected is None, raw.detail
            results[raw.path] = import_function(raw.content.decode())
    assert {path: r.status for path, r in results.items()} == {
        "released_style.jsonl:0": "ok",
        "released_style.jsonl:1": "ok",
        "generator_style.jsonl:0:gcd_chain": "ok",
    }
    assert "main_solution = largest_group" in results["released_style.jsonl:1"].reference_code
    assert "def input_generator():" in results["generator_style.jsonl:0:gcd_chain"].input_generator
    assert [json.loads(p["input"]) for p in results["released_style.jsonl:0"].ios][:2] == [
        {"n": 1},
        {"n": 2},
    ]

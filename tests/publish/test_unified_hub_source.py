"""The `unified_hub` source: unified functions from a Hub dataset at a pinned revision."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from codeio_dagster.sources.unified import UnifiedHubSource

RELEASED_ROW = {
    "refcode": "def main_solution(a, b):\n    return a + b\n",
    "funcname": "main_solution",
    "problem_description": "Add two numbers.",
    "io_requirements": "a, b: int -> int",
    # Inputs with different keys per row: read as a frame, each would gain the other's keys.
    "ios": [{"input": {"a": 1, "b": 2}, "output": 3}],
}
OTHER_ROW = RELEASED_ROW | {
    "refcode": "def main_solution(x):\n    return -x\n",
    "ios": [{"input": {"x": 4}, "output": -4}],
}


def test_jsonl_and_parquet_rows_of_a_pinned_revision_land_as_records(hub, tmp_path):
    api = HfApi(endpoint=hub.url)
    api.create_repo("o/functions", repo_type="dataset")
    jsonl = "".join(json.dumps(r) + "\n" for r in (RELEASED_ROW, OTHER_ROW)) + "[1]\n"
    buf = io.BytesIO()
    pl.DataFrame(
        {
            "code": [OTHER_ROW["refcode"]],
            "pairs": [json.dumps(OTHER_ROW["ios"])],
            "q": ["q"],
            "d": ["d"],
        }
    ).write_parquet(buf)
    ops = [
        CommitOperationAdd("released/part.jsonl", jsonl.encode()),
        CommitOperationAdd("mine/part.parquet", buf.getvalue()),
    ]
    sha = api.create_commit("o/functions", ops, commit_message="f", repo_type="dataset").oid
    cache = str(tmp_path / "cache")

    released = UnifiedHubSource(
        UnifiedHubSource.Options(repo_id="o/functions", files="released/*.jsonl", cache_dir=cache)
    )
    first, second, bad = released.scan()
    assert [json.loads(json.loads(f.content)["ios"][0]["input"]) for f in (first, second)] == [
        {"a": 1, "b": 2},
        {"x": 4},
    ]
    assert first.origin == {
        "repo_id": "o/functions",
        "revision": sha,
        "file": "released/part.jsonl",
        "row": 0,
        "format": "unified",
    }
    assert (bad.rejected, bad.detail) == ("bad_row", "line 3: a JSON list, not an object")

    options = {
        "repo_id": "o/functions",
        "revision": sha,
        "files": "mine/*.parquet",
        "cache_dir": cache,
        "columns": {
            "reference_code": "code",
            "ios": "pairs",
            "problem_statement": "q",
            "io_description": "q2",
            "entry_function": None,
        },
    }
    with pytest.raises(KeyError, match=r"no column 'q2' \(columns.io_description"):
        list(UnifiedHubSource(UnifiedHubSource.Options(**options)).files())
    options["columns"]["io_description"] = "q"
    with pytest.raises(ValueError, match="columns.problem_statement and columns.io_description"):
        UnifiedHubSource.Options(**options)
    options["columns"]["io_description"] = "d"
    (raw,) = UnifiedHubSource(UnifiedHubSource.Options(**options)).scan()
    record = json.loads(raw.content)
    assert record["reference_code"] == OTHER_ROW["refcode"]
    assert (record["problem_statement"], record["io_description"]) == ("q", "d")
    assert record["ios"] == [{"input": '{"x": 4}', "output": "-4"}]

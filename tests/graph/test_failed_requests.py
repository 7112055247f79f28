"""Failure is loud: an LLM stage whose requests all failed, or more of them than
`llm.max_failure_rate`, fails its run with the reason; below the bound it reports how many."""

from __future__ import annotations

import socket

import dagster as dg
import polars as pl

from codeio_dagster.assets.responses import responses
from codeio_dagster.assets.unified_functions import unified_functions
from codeio_dagster.config import load_config
from codeio_dagster.models import PredictionTaskRecord, RawFileRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources


def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=shards)
    def _asset() -> pl.DataFrame:
        return frame

    return _asset


def run(assets, config_path: str) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    config = load_config(config_path)
    return dg.materialize(
        assets,
        partition_key="s1",
        instance=instance,
        resources=build_resources(config, config_path),
        raise_on_error=False,
    )


def failure_of(result: dg.ExecuteInProcessResult, step: str) -> str:
    (event,) = [e for e in result.get_step_failure_events() if e.step_key == step]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: connections are refused


def raw_files(n: int) -> pl.DataFrame:
    rows = []
    for i in range(n):
        content = f"def f{i}(xs):\n    return {i}\n"
        rows.append(
            RawFileRecord(
                file_id=f"file{i}",
                shard="s1",
                source="t",
                path=f"f{i}.py",
                origin="{}",
                size_bytes=len(content),
                duplicate_of=None,
                content=content,
                status="ok",
            )
        )
    return to_frame(rows, RawFileRecord)


def tasks(ids: list[str]) -> pl.DataFrame:
    rows = [
        PredictionTaskRecord(
            task_id=t,
            function_id="f1",
            shard="s1",
            kind="output_prediction",
            pair_index=0,
            given="{}",
            expected="1",
            prompt=f"Task {t}",
            status="ok",
            detail=None,
        )
        for t in ids
    ]
    return to_frame(rows, PredictionTaskRecord)


def test_endpoint_down_fails_the_refactor_run_with_the_reason(tmp_path, graph_files, monkeypatch):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    path = graph_files.write_config(tmp_path, url)
    result = run([stand_in("raw_code", raw_files(3)), unified_functions], path)
    assert not result.success
    why = failure_of(result, "unified_functions")
    assert "unified_functions: every request failed: 3 of 3" in why
    assert "connection error" in why and "llm.max_failure_rate" in why


def test_endpoint_down_fails_the_responses_run(tmp_path, graph_files, monkeypatch):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    url = f"http://127.0.0.1:{closed_port()}/v1"
    path = graph_files.write_config(tmp_path, url)
    result = run([stand_in("prediction_tasks", tasks(["a", "b"])), responses], path)
    assert not result.success
    assert "responses: every request failed: 2 of 2" in failure_of(result, "responses")


def test_failure_rate_below_the_bound_is_reported_and_above_it_fails(
    tmp_path, graph_files, monkeypatch
):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    llm = graph_files.ScriptedLLM(
        lambda messages: 500 if "fail" in messages[0]["content"] else '{"output": 1}'
    )
    try:
        ids = ["fail_1", "ok_1", "ok_2", "ok_3"]
        path = graph_files.write_config(tmp_path, llm.base_url)
        result = run([stand_in("prediction_tasks", tasks(ids)), responses], path)
        assert result.success
        (event,) = result.asset_materializations_for_node("responses")
        meta = {k: v.value for k, v in event.metadata.items()}
        assert (meta["requests_failed"], meta["request_failure_rate"]) == (1, 0.25)

        strict = tmp_path / "strict.yaml"
        text = (tmp_path / "codeio.yaml").read_text()
        strict.write_text(text.replace("max_retries: 0", "max_retries: 0\n  max_failure_rate: 0.2"))
        assert load_config(strict).llm.max_failure_rate == 0.2
        result = run([stand_in("prediction_tasks", tasks(ids)), responses], str(strict))
        assert not result.success
        why = failure_of(result, "responses")
        assert "too many requests failed: 1 of 4 (rate 25.00%" in why
        assert "HTTP 500" in why
    finally:
        llm.close()

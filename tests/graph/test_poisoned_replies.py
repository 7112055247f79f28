"""One poisoned model reply never halts a shard: it becomes its row's status, and a rerun (the
reply now cached as ok) gives the same status without a new request.

The replies come from a scripted OpenAI-compatible server over a real socket; the stages run
as Dagster assets with their upstream tables given by stand-in assets.
"""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from codeio_dagster.assets.responses import responses
from codeio_dagster.assets.unified_functions import unified_functions
from codeio_dagster.assets.verdicts import build_verdicts
from codeio_dagster.config import load_config
from codeio_dagster.models import (
    PredictionTaskRecord,
    RawFileRecord,
    UnifiedFunctionRecord,
    to_frame,
)
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources

# Valid grammar that Python's AST builder cannot hold (RecursionError, not SyntaxError).
LONG_CHAIN = "def main_solution(x):\n    return " + "+".join(["1"] * 200_000) + "\n"

# Turn-0 answers by task; the poisoned ones each used to raise out of answer extraction or
# out of writing the table (a lone surrogate cannot be stored as UTF-8).
ANSWERS = {
    "deep_fence": "```json\n" + "[" * 5000 + "]" * 5000 + "\n```",
    "many_braces": "{" * 20_000,
    "surrogate_answer": '```json\n{"output": "\\ud800"}\n```',
    "surrogate_content": 'The answer is \ud800.\n```json\n{"output": 6}\n```',
    "good": '```json\n{"output": 6}\n```',
}


def stand_in(name: str, frame: pl.DataFrame) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=shards)
    def _asset() -> pl.DataFrame:
        return frame

    return _asset


def run(assets, config_path: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    config = load_config(config_path)
    return dg.materialize(
        assets,
        partition_key="s1",
        instance=instance,
        resources=build_resources(config, config_path),
        raise_on_error=False,
    )


def new_instance() -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    return instance


def raw_file(file_id: str) -> RawFileRecord:
    content = f"def {file_id}(xs):\n    return 1\n"
    return RawFileRecord(
        file_id=file_id,
        shard="s1",
        source="t",
        path=f"{file_id}.py",
        origin="{}",
        size_bytes=len(content),
        duplicate_of=None,
        content=content,
        status="ok",
    )


def test_a_refactor_reply_the_parser_cannot_hold_is_its_rows_status(
    tmp_path, monkeypatch, graph_files
):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    good = graph_files.REFACTOR_REPLY
    poisoned = good.replace("def main_solution(numbers):", LONG_CHAIN + "\n\ndef unused(numbers):")

    def reply(messages):
        return poisoned if "def poisoned(" in messages[-1]["content"] else good

    llm = graph_files.ScriptedLLM(reply)
    try:
        config_path = graph_files.write_config(tmp_path, llm.base_url)
        raw = to_frame([raw_file("poisoned"), raw_file("fine")], RawFileRecord)
        assets = [stand_in("raw_code", raw), unified_functions]
        statuses = []
        for _ in range(2):
            result = run(assets, config_path, new_instance())
            assert result.success
            frame = result.output_for_node("unified_functions")
            statuses.append(dict(frame.select("file_id", "status").iter_rows()))
            (event,) = result.asset_materializations_for_node("unified_functions")
            assert event.metadata["requests_failed"].value == 0
            assert event.metadata["request_failure_rate"].value == 0.0
            detail = frame.filter(pl.col("file_id") == "poisoned")["detail"][0]
            assert "RecursionError" in detail and "Main Function" in detail
        assert statuses[0] == {"poisoned": "invalid_code", "fine": "ok"}
        assert statuses[1] == statuses[0]
        assert len(llm.requests) == 2  # the rerun read both replies from the cache
    finally:
        llm.close()


def task(task_id: str) -> PredictionTaskRecord:
    return PredictionTaskRecord(
        task_id=task_id,
        function_id="f1",
        shard="s1",
        kind="output_prediction",
        pair_index=0,
        given='{"numbers": [1, 2, 3]}',
        expected="6",
        prompt=f"Task {task_id}: predict the output.",
        status="ok",
        detail=None,
    )


@pytest.mark.sandbox
def test_poisoned_answers_become_parse_errors_and_the_shard_goes_on(
    tmp_path, monkeypatch, graph_files
):
    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")

    def reply(messages):
        return ANSWERS[messages[0]["content"].split(":")[0].removeprefix("Task ")]

    llm = graph_files.ScriptedLLM(reply)
    try:
        config_path = graph_files.write_config(
            tmp_path, llm.base_url, extra="sandbox: {workers: 1}\n"
        )
        tasks = to_frame([task(t) for t in ANSWERS], PredictionTaskRecord)
        function = UnifiedFunctionRecord(
            function_id="f1",
            file_id="file-f1",
            shard="s1",
            status="ok",
            detail=None,
            reference_code="def main_solution(numbers):\n    return sum(numbers)\n",
            io_description="numbers -> sum",
            input_generator="def input_generator():\n    return {'numbers': [1]}\n",
            problem_statement="Add the numbers.",
            request_hash=None,
            model=None,
        )
        assets = [
            stand_in("prediction_tasks", tasks),
            stand_in("unified_functions", to_frame([function], UnifiedFunctionRecord)),
            responses,
            build_verdicts(0),
        ]
        seen = []
        for _ in range(2):
            result = run(assets, config_path, new_instance())
            assert result.success
            verdicts = result.output_for_node("verdicts")
            seen.append(dict(verdicts.select("task_id", "status").iter_rows()))
        assert seen[0] == {
            "deep_fence": "parse_error",
            "many_braces": "parse_error",
            "surrogate_answer": "parse_error",
            "surrogate_content": "correct",
            "good": "correct",
        }
        assert seen[1] == seen[0]
        assert len(llm.requests) == len(ANSWERS)  # the rerun sent nothing
        details = dict(verdicts.select("task_id", "feedback").iter_rows())
        assert "deeper than" in details["deep_fence"]
        replies = result.output_for_node("responses")
        content = dict(replies.select("task_id", "content").iter_rows())
        assert "\ufffd" in content["surrogate_content"]
        assert json.loads(replies["messages"][0])[0]["role"] == "user"
    finally:
        llm.close()

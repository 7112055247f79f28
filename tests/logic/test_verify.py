"""Judging replies: every reply gets one verdict from its task kind, executions are batched."""

from __future__ import annotations

import json
import sys

import pytest

from codeio_dagster.models import PredictionTaskRecord, ResponseRecord, to_frame
from codeio_dagster.plugins import task_kinds
from codeio_dagster.sandbox import JobResult
from codeio_dagster.verify import judge

EXAMPLE_KIND = "examples/plugins/output_type_task.py"


def _task(task_id, kind, given, expected):
    return PredictionTaskRecord(
        task_id=task_id,
        function_id="f1",
        shard="s0",
        kind=kind,
        pair_index=0,
        given=given,
        expected=expected,
        prompt="p",
        status="ok",
        detail=None,
    )


def _reply(task_id, content, status="ok", error=None):
    return ResponseRecord(
        task_id=task_id,
        shard="s0",
        turn=0,
        messages="[]",
        content=content,
        status=status,
        finish_reason="stop" if status == "ok" else "length",
        error=error,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=0.0,
        cached=False,
        request_hash="h",
        model="m",
    )


def _block(key, value):
    return f"reasoning\n```json\n{json.dumps({key: value})}\n```"


@pytest.fixture
def judged(project_root, monkeypatch):
    monkeypatch.chdir(project_root)
    tasks = [
        _task("out_ok", "output_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("out_wrong", "output_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("out_unparsed", "output_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("out_truncated", "output_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("in_ok", "input_prediction", "[1, 2]", '{"n": 2}'),
        _task("in_crash", "input_prediction", "[1, 2]", '{"n": 2}'),
        _task("in_not_object", "input_prediction", "[1, 2]", '{"n": 2}'),
        _task("type_ok", "output_type_prediction", '{"n": 3}', '"list"'),
        _task("type_bad", "output_type_prediction", '{"n": 3}', '"list"'),
        _task("type_wrong", "output_type_prediction", '{"n": 3}', '"list"'),
    ]
    replies = [
        _reply("out_ok", _block("output", [1, 2, 3.0])),
        _reply("out_wrong", _block("output", [3, 2, 1])),
        _reply("out_unparsed", "I think it is a list of three numbers."),
        _reply("out_truncated", "Let me think", status="truncated", error="finish_reason=length"),
        _reply("in_ok", _block("input", {"n": 2})),
        _reply("in_crash", _block("input", {"n": -1})),
        _reply("in_not_object", _block("input", [2])),
        _reply("type_ok", _block("type", "list")),
        _reply("type_bad", _block("type", "array")),
        _reply("type_wrong", _block("type", "object")),
    ]
    batches = []

    def run_inputs(runs):
        batches.append([r.task_id for r in runs])
        return [
            JobResult(id=r.task_id, status="ok", output="[1, 2]")
            if r.predicted_input == {"n": 2}
            else JobResult(id=r.task_id, status="exception", error="ValueError: n must be >= 0")
            for r in runs
        ]

    kinds = task_kinds({t.kind for t in tasks}, [EXAMPLE_KIND])
    frame = judge(
        to_frame(replies, ResponseRecord),
        to_frame(tasks, PredictionTaskRecord),
        kinds=kinds,
        code_by_function={"f1": "def main_solution(n):\n    return list(range(1, n + 1))"},
        run_inputs=run_inputs,
    )
    return {row["task_id"]: row for row in frame.iter_rows(named=True)}, batches


def test_one_verdict_per_reply_with_the_status_of_each_failure_form(judged):
    verdicts, _ = judged
    assert {k: v["status"] for k, v in verdicts.items()} == {
        "out_ok": "correct",
        "out_wrong": "wrong",
        "out_unparsed": "parse_error",
        "out_truncated": "truncated",
        "in_ok": "correct",
        "in_crash": "exec_error",
        "in_not_object": "missing_key",
        "type_ok": "correct",
        "type_bad": "missing_key",
        "type_wrong": "wrong",
    }


def test_every_non_correct_verdict_has_feedback_and_correct_ones_none(judged):
    verdicts, _ = judged
    for task_id, v in verdicts.items():
        assert (v["feedback"] is None) == (v["status"] == "correct"), task_id
    assert "ValueError: n must be >= 0" in verdicts["in_crash"]["feedback"]
    assert "[1, 2, 3]" not in verdicts["out_wrong"]["feedback"]  # the answer is never leaked


def test_input_predictions_run_in_one_batch_and_keep_answer_and_actual(judged):
    verdicts, batches = judged
    assert batches == [["in_ok", "in_crash"]]
    assert (verdicts["in_ok"]["answer"], verdicts["in_ok"]["actual"]) == ('{"n": 2}', "[1, 2]")


def test_a_plugin_kind_judges_its_own_answers(judged):
    verdicts, _ = judged
    assert verdicts["type_ok"]["answer"] == '"list"'
    # The feedback names the plugin's own answer key and its reason, not a generic "answer".
    assert '{"type": ...}' in verdicts["type_bad"]["feedback"]
    assert "must be one of null, boolean" in verdicts["type_bad"]["feedback"]


def test_a_row_whose_judging_raises_gets_judge_error_and_the_rest_are_judged():
    from codeio_dagster.tasks.builtin import InputPrediction, OutputPrediction

    class Broken(OutputPrediction):
        name = "broken_prediction"

        def check_answer(self, answer_value, task):
            raise KeyError("a plugin bug")

    tasks = [
        _task("boom", "broken_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("deep", "input_prediction", "[1, 2]", '{"n": 2}'),
        _task("fine", "output_prediction", '{"n": 3}', "[1, 2, 3]"),
    ]
    replies = [
        _reply("boom", _block("output", [1, 2, 3])),
        _reply("deep", _block("input", {"n": 2})),
        _reply("fine", _block("output", [1, 2, 3])),
    ]
    too_deep = "[" * 100_000 + "]" * 100_000  # an output no recursive decoder can read

    frame = judge(
        to_frame(replies, ResponseRecord),
        to_frame(tasks, PredictionTaskRecord),
        kinds={
            "broken_prediction": Broken(),
            "input_prediction": InputPrediction(),
            "output_prediction": OutputPrediction(),
        },
        code_by_function={"f1": "def main_solution(n):\n    return n"},
        run_inputs=lambda runs: [
            JobResult(id=r.task_id, status="ok", output=too_deep) for r in runs
        ],
    )
    verdicts = {row["task_id"]: row for row in frame.iter_rows(named=True)}
    assert {k: v["status"] for k, v in verdicts.items()} == {
        "boom": "judge_error",
        "deep": "judge_error",
        "fine": "correct",
    }
    assert "KeyError: 'a plugin bug'" in verdicts["boom"]["feedback"]
    assert "RecursionError" in verdicts["deep"]["feedback"]


def test_a_plugin_kind_words_its_own_feedback_and_its_texts_are_hashed(
    judged, project_root, monkeypatch
):
    verdicts, _ = judged
    # The example plugin's own text for a wrong type, not the shared "Your answer ... is not
    # correct."; its other statuses keep the shared wording.
    assert verdicts["type_wrong"]["feedback"].startswith('The result is not of the type "object"')
    assert "must be one of" in verdicts["type_bad"]["feedback"]
    kind = task_kinds({"output_type_prediction"}, [EXAMPLE_KIND])["output_type_prediction"]
    module = sys.modules[type(kind).__module__]
    before = type(kind).prompt_hash()
    monkeypatch.setattr(module, "PROMPT", module.PROMPT + " Be brief.")
    after_prompt = type(kind).prompt_hash()
    assert after_prompt != before  # the card's hash follows the plugin's prompt ...
    monkeypatch.setattr(module, "WRONG", module.WRONG + " Really.")
    assert type(kind).prompt_hash() != after_prompt  # ... and its feedback


def test_a_plugin_whose_feedback_raises_gives_judge_error_with_the_fault():
    from codeio_dagster.tasks.builtin import OutputPrediction

    class Mute(OutputPrediction):
        name = "mute_prediction"

        def feedback(self, status, *, answer_json=None, actual_json=None, error=None):
            raise ValueError("cannot word it")

    tasks = [
        _task("wrong", "mute_prediction", '{"n": 3}', "[1, 2, 3]"),
        _task("right", "mute_prediction", '{"n": 3}', "[1, 2, 3]"),
    ]
    replies = [_reply("wrong", _block("output", [3])), _reply("right", _block("output", [1, 2, 3]))]
    frame = judge(
        to_frame(replies, ResponseRecord),
        to_frame(tasks, PredictionTaskRecord),
        kinds={"mute_prediction": Mute()},
        code_by_function={"f1": "def main_solution(n):\n    return n"},
        run_inputs=lambda runs: [],
    )
    verdicts = {row["task_id"]: row for row in frame.iter_rows(named=True)}
    assert verdicts["right"]["status"] == "correct"
    assert verdicts["wrong"]["status"] == "judge_error"
    assert verdicts["wrong"]["feedback"] == "judge_error: ValueError: cannot word it"

"""Task kinds: deterministic task building, prompts with JSON values, answer checks."""

from __future__ import annotations

import json

import pytest

from codeio_dagster.models import IOPairRecord, PredictionTaskRecord
from codeio_dagster.tasks import (
    FunctionView,
    InputPrediction,
    OutputPrediction,
    choose_pairs,
    make_all_tasks,
    prompt_hashes,
    task_id_for,
)

FN = FunctionView(
    function_id="fn1",
    problem_statement="Given `words` and `sep`, what single line do you get?",
    io_description="`words` (list of str), `sep` (str); returns str",
    reference_code="def main_solution(words, sep):\n    return sep.join(words)\n",
)
PAIRS = [
    IOPairRecord(
        input=json.dumps({"words": [f"w{i}", "x"], "sep": "-"}), output=json.dumps(f"w{i}-x")
    )
    for i in range(10)
]


def make(kind_cls, **kw):
    kind = kind_cls()
    args = {"per_function": 3, "include_code": True, "shard": "s1"} | kw
    return kind, kind.make_tasks([FN], {"fn1": PAIRS}, **args)


def test_tasks_are_deterministic_and_ids_unique():
    _, a = make(OutputPrediction)
    _, b = make(OutputPrediction)
    assert [t.task_id for t in a] == [t.task_id for t in b]
    assert [t.pair_index for t in a] == [t.pair_index for t in b]
    assert len({t.task_id for t in a}) == 3
    assert a[0].task_id == task_id_for("fn1", "output_prediction", a[0].pair_index)


def test_pair_choice_depends_on_function_and_kind():
    picks = {
        choose_pairs(f"fn{i}", "output_prediction", 10, 3)
        == choose_pairs("fn0", "output_prediction", 10, 3)
        for i in range(1, 20)
    }
    assert False in picks
    assert choose_pairs("fn1", "output_prediction", 10, 3) == choose_pairs(
        "fn1", "output_prediction", 10, 3
    )
    assert choose_pairs("fn1", "x", 2, 3) == [0, 1]
    assert len(set(choose_pairs("fn1", "x", 10, 10))) == 10


def test_output_prediction_shows_input_as_json_and_expects_output():
    _, tasks = make(OutputPrediction)
    t = tasks[0]
    pair = PAIRS[t.pair_index]
    assert (t.given, t.expected, t.kind, t.status, t.shard) == (
        pair.input,
        pair.output,
        "output_prediction",
        "ok",
        "s1",
    )
    assert f'{{"words": ["w{t.pair_index}", "x"], "sep": "-"}}' in t.prompt
    assert "('w" not in t.prompt  # never Python repr
    assert '{"output":' in t.prompt
    assert FN.problem_statement in t.prompt and FN.io_description in t.prompt


def test_input_prediction_shows_output_and_expects_input():
    _, tasks = make(InputPrediction)
    t = tasks[0]
    pair = PAIRS[t.pair_index]
    assert (t.given, t.expected) == (pair.output, pair.input)
    assert f'"w{t.pair_index}-x"' in t.prompt
    assert '{"input": {' in t.prompt


def test_reference_code_hint_toggle():
    _, with_code = make(OutputPrediction)
    _, without = make(OutputPrediction, include_code=False)
    assert "return sep.join(words)" in with_code[0].prompt
    assert "return sep.join(words)" not in without[0].prompt
    assert "Reference code" not in without[0].prompt


def test_counters_and_drops():
    kind = OutputPrediction()
    bad = [IOPairRecord(input="[1, 2]", output="3")]
    other = FunctionView("fn2", "q?", "io", "code")
    none = FunctionView("fn3", "q?", "io", "code")
    tasks = kind.make_tasks(
        [FN, other, none], {"fn1": PAIRS[:2], "fn2": bad}, per_function=3, shard="s"
    )
    assert len(tasks) == 2
    assert kind.counters == {
        "rows_in": 3,
        "kept": 2,
        "dropped_no_pairs": 1,
        "dropped_invalid_pair": 1,
    }
    assert kind.seconds > 0  # set by the run, not the 0.0 a fresh kind starts with


def test_all_kinds_merge_their_counters_once_per_function():
    bad = [IOPairRecord(input="[1, 2]", output="3")]
    other = FunctionView("fn2", "q?", "io", "code")
    no_text = FunctionView("fn4", "", "io", "code")
    none = FunctionView("fn3", "q?", "io", "code")
    kinds = {"output_prediction": OutputPrediction(), "input_prediction": InputPrediction()}
    records, counters = make_all_tasks(
        kinds,
        {"output_prediction": 2, "input_prediction": 1},
        [FN, other, no_text, none],
        {"fn1": PAIRS, "fn2": bad, "fn4": PAIRS[:1]},
        include_code=True,
        shard="s",
    )
    assert [(t.kind, t.function_id) for t in records] == [
        ("output_prediction", "fn1"),
        ("output_prediction", "fn1"),
        ("input_prediction", "fn1"),
    ]
    assert counters == {
        "rows_in": 4,  # functions
        "kept": 3,  # tasks
        "dropped_no_pairs": 1,  # fn3, once although both kinds saw it
        "dropped_invalid_pair": 2,  # fn2's one pair, once per kind
        "dropped_missing_text": 2,  # fn4's one pair, once per kind
    }


def test_pairs_as_row_dicts_are_accepted():
    rows = [{"input": p.input, "output": p.output} for p in PAIRS]
    tasks = OutputPrediction().make_tasks([FN], {"fn1": rows}, per_function=2, shard="s")
    assert len(tasks) == 2 and all(isinstance(t, PredictionTaskRecord) for t in tasks)


def test_output_check_uses_the_codeio_rule():
    _, tasks = make(OutputPrediction)
    t = tasks[0]
    truth = json.loads(t.expected)
    kind = OutputPrediction()
    assert kind.check_answer(truth, t).status == "correct"
    assert kind.check_answer(truth + "!", t).status == "wrong"
    row = t.model_dump() | {"expected": "1.0"}
    assert kind.check_answer(1.0004, row).status == "correct"
    assert kind.check_answer(1.01, row).status == "wrong"


def test_input_check_asks_for_execution_then_compares_outputs():
    _, tasks = make(InputPrediction)
    t = tasks[0]
    kind = InputPrediction()
    check = kind.check_answer({"words": ["a"], "sep": ""}, t)
    assert check.status == "needs_execution" and check.run_input == {"words": ["a"], "sep": ""}
    assert kind.check_answer([1], t).status == "missing_key"
    assert kind.check_execution(json.loads(t.given), t).status == "correct"
    assert kind.check_execution("nope", t).status == "wrong"
    with pytest.raises(NotImplementedError):
        OutputPrediction().check_execution(1, t)


def test_prompt_hashes_cover_every_template():
    hashes = prompt_hashes()
    assert set(hashes) == {"refactor", "output_prediction", "input_prediction", "feedback"}
    assert len(set(hashes.values())) == 4


def test_a_plugin_whose_build_raises_drops_that_pair_and_the_rest_are_built(caplog):
    class Flaky(OutputPrediction):
        name = "flaky_prediction"

        def build_prompt(self, fn, pair, *, include_code=True):
            if json.loads(pair.input)["words"][0] == "w3":
                raise RecursionError("a plugin bug")
            return super().build_prompt(fn, pair, include_code=include_code)

    kind = Flaky()
    tasks = kind.make_tasks([FN], {"fn1": PAIRS}, per_function=10, shard="s1")
    assert len(tasks) == 9
    assert kind.counters["dropped_build_error"] == 1 and kind.counters["kept"] == 9
    assert "flaky_prediction could not build a task of function fn1" in caplog.text
    assert "RecursionError: a plugin bug" in caplog.text

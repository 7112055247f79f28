"""Answer extraction, feedback texts and revision messages."""

from __future__ import annotations

import pytest

from codeio_dagster.answers import (
    FEEDBACK_TEMPLATES,
    MAX_REPLY_CHARS,
    REVISION_REQUEST,
    balanced_objects,
    extract_answer,
    feedback_hash,
    feedback_text,
    revision_messages,
    scan_objects,
)


def test_last_json_block_wins():
    text = 'First guess:\n```json\n{"output": 1}\n```\nOn reflection:\n```json\n{"output": [2, 3]}\n```\n'
    got = extract_answer(text, "output")
    assert (got.status, got.value, got.method) == ("ok", [2, 3], "json_block")


def test_unlabelled_fence_that_parses_counts():
    got = extract_answer('Reasoning...\n```\n{"output": "abc"}\n```', "output")
    assert (got.status, got.value) == ("ok", "abc")


def test_uppercase_json_label_and_indented_fence():
    got = extract_answer('  ```JSON\n  {"input": {"n": 4}}\n  ```', "input")
    assert (got.status, got.value) == ("ok", {"n": 4})


def test_json_in_prose_uses_last_balanced_object():
    text = 'The input {"n": 5} gives 25, so the answer is {"output": 25}. Done.'
    got = extract_answer(text, "output")
    assert (got.status, got.value, got.method) == ("ok", 25, "json_object")


def test_braces_and_quotes_inside_strings_do_not_confuse_the_scanner():
    text = 'So: {"output": "a } tricky \\" {string"} and nothing else'
    got = extract_answer(text, "output")
    assert (got.status, got.value) == ("ok", 'a } tricky " {string')


def test_nested_objects_are_one_top_level_object():
    assert balanced_objects('x {"a": {"b": {}}} y {"c": 1}') == ['{"a": {"b": {}}}', '{"c": 1}']


def test_apostrophes_in_prose_are_not_strings():
    text = "Let's see {it's not JSON}\nfinally {\"output\": true}"
    got = extract_answer(text, "output")
    assert (got.status, got.value) == ("ok", True)


def test_python_literal_fallback_converts_to_json_values():
    text = "The final answer:\n```python\n{'output': (1, 'a', None, True)}\n```"
    got = extract_answer(text, "output")
    assert (got.status, got.value, got.method) == ("ok", [1, "a", None, True], "python_literal")


def test_python_literal_in_prose_with_set_and_int_keys():
    got = extract_answer("so {'output': {1: {3, 2}}}", "output")
    assert (got.status, got.value) == ("ok", {"1": [2, 3]})


def test_no_repair_by_string_replacement():
    # A value that is neither JSON nor a literal is a parse error, not patched into one.
    got = extract_answer("```json\n{'output': undefined}\n```", "output")
    assert got.status == "parse_error"


def test_single_quotes_inside_json_strings_survive():
    got = extract_answer('```json\n{"output": "it\'s fine"}\n```', "output")
    assert got.value == "it's fine"


def test_missing_key_names_the_key_and_keys_found():
    got = extract_answer('```json\n{"result": 3}\n```', "output")
    assert got.status == "missing_key"
    assert "'output'" in got.detail and "'result'" in got.detail


def test_non_object_answer_is_missing_key():
    got = extract_answer("```json\n[1, 2]\n```", "output")
    assert got.status == "missing_key"
    assert "array" in got.detail


@pytest.mark.parametrize("text", [None, "", "I think the answer is five."])
def test_no_answer_is_parse_error(text):
    assert extract_answer(text, "output").status == "parse_error"


def test_truncated_reply_without_closing_brace_is_parse_error():
    text = 'Step 1 ... so\n```json\n{"output": [1, 2, 3'
    assert extract_answer(text, "output").status == "parse_error"


def test_truncated_last_block_falls_back_to_an_earlier_complete_one():
    text = '```json\n{"output": 7}\n```\nWait, let me redo: {"output": [1, 2'
    got = extract_answer(text, "output")
    assert (got.status, got.value) == ("ok", 7)


def test_falsy_values_are_kept():
    for value, text in [(0, "0"), (None, "null"), (False, "false"), ("", '""'), ([], "[]")]:
        got = extract_answer(f'```json\n{{"output": {text}}}\n```', "output")
        assert (got.status, got.value) == ("ok", value)


# -- feedback ------------------------------------------------------------------------------------


def test_wrong_output_feedback_never_reveals_the_expected_value():
    text = feedback_text(
        "wrong", kind="output_prediction", answer_json="41", expected_json="123456"
    )
    assert "41" in text
    assert "123456" not in text


def test_wrong_input_feedback_shows_what_the_input_produces():
    text = feedback_text(
        "wrong",
        kind="input_prediction",
        answer_json='{"n": 3}',
        expected_json='{"n": 777}',
        actual_json="9",
    )
    assert '{"n": 3}' in text and "returns 9" in text
    assert "777" not in text


def test_exec_error_feedback_has_exception_type_and_message():
    text = feedback_text(
        "exec_error",
        kind="input_prediction",
        answer_json='{"n": -1}',
        error="ValueError: n must be positive",
    )
    assert "ValueError: n must be positive" in text


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        ("parse_error", "could not be read as JSON"),
        ("missing_key", '"output"'),
        ("timeout", "time limit"),
        ("truncated", "cut off"),
    ],
)
def test_feedback_for_each_failure(status, needle):
    text = feedback_text(status, kind="output_prediction", error="details here")
    assert needle in text


def test_missing_key_feedback_for_input_prediction_names_input():
    assert '"input"' in feedback_text("missing_key", kind="input_prediction", error="x")


def test_every_non_correct_verdict_has_feedback():
    for status in [
        "wrong",
        "parse_error",
        "missing_key",
        "exec_error",
        "timeout",
        "truncated",
        "request_failed",
    ]:
        assert feedback_text(status, kind="output_prediction").strip()


def test_feedback_rejects_correct_and_unknown_statuses():
    with pytest.raises(ValueError, match="correct verdict has no feedback"):
        feedback_text("correct", kind="output_prediction")
    with pytest.raises(ValueError, match="'bogus'"):
        feedback_text("bogus", kind="output_prediction")


def test_long_values_are_shortened_in_feedback():
    text = feedback_text("wrong", kind="output_prediction", answer_json="[" + "1," * 1000 + "1]")
    assert len(text) < 500


def test_revision_messages_append_reply_and_feedback_request():
    history = [{"role": "user", "content": "P"}]
    out = revision_messages(history, "my reply", "Your output 3 is wrong.")
    assert out[:2] == [
        {"role": "user", "content": "P"},
        {"role": "assistant", "content": "my reply"},
    ]
    assert out[2]["role"] == "user"
    assert out[2]["content"].startswith("Your output 3 is wrong.")
    assert out[2]["content"].endswith(REVISION_REQUEST)
    assert "do not repeat" in out[2]["content"]
    assert history == [{"role": "user", "content": "P"}]  # not mutated


def test_revision_messages_validate_history():
    with pytest.raises(ValueError, match="at least the original user prompt"):
        revision_messages([], "r", "f")
    with pytest.raises(ValueError, match=r"history\[0\]"):
        revision_messages([{"content": "no role"}], "r", "f")


def test_feedback_hash_covers_the_templates(monkeypatch):
    before = feedback_hash()
    monkeypatch.setitem(FEEDBACK_TEMPLATES, ("timeout", "*"), "changed")
    assert feedback_hash() != before


# -- poisoned replies: every one is a status, never an exception; the scan is linear ----------


def test_json_nested_thousands_deep_is_a_parse_error_not_a_recursion_error():
    for text in ("```json\n" + "[" * 5000 + "]" * 5000 + "\n```", "[" * 5000 + "]" * 5000):
        got = extract_answer(text, "output")
        assert got.status == "parse_error"
    got = extract_answer('```json\n{"output": ' + "[" * 5000 + "]" * 5000 + "}\n```", "output")
    assert (got.status, got.detail) == ("parse_error", "the answer nests deeper than 100 levels")


def test_an_answer_deeper_than_the_bound_is_a_parse_error_and_one_within_is_kept():
    deep = '{"output": ' + "[" * 150 + "]" * 150 + "}"
    assert extract_answer(deep, "output").detail == "the answer nests deeper than 100 levels"
    ok = '{"output": ' + "[" * 50 + "]" * 50 + "}"
    assert extract_answer(ok, "output").status == "ok"


def test_a_lone_surrogate_escape_in_the_answer_is_a_parse_error():
    got = extract_answer('```json\n{"output": "\\ud800"}\n```', "output")
    assert got.status == "parse_error"
    assert "surrogate" in got.detail


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "{" * n,
        lambda n: '{"' * n,
        lambda n: "{'" * n + "\n",
        lambda n: "{\\'" * n + "\n",
        lambda n: '{\\"' * n,
        lambda n: "{it's\n" * n,
        lambda n: '{"a": "' + "}" * n,
        lambda n: "{}" * n,
    ],
)
def test_the_object_scan_visits_each_character_a_bounded_number_of_times(make):
    # Counted work, not time: the quadratic scan visited ~n^2/2 characters on "{" * n.
    for n in (1_000, 10_000, 50_000):
        text = make(n)
        _, visited = scan_objects(text)
        assert visited <= 4 * len(text)


def test_twenty_thousand_open_braces_are_a_parse_error():
    assert extract_answer("{" * 20_000, "output").status == "parse_error"


def test_a_reply_longer_than_the_bound_is_read_from_its_end():
    text = "x" * (MAX_REPLY_CHARS + 10) + '\n```json\n{"output": 1}\n```'
    assert extract_answer(text, "output").value == 1
    assert extract_answer('{"output": 1}\n' + "x" * MAX_REPLY_CHARS, "output").status == (
        "parse_error"
    )

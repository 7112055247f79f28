"""Answer extraction: the final JSON answer read out of a reply, whatever the reply holds."""

from __future__ import annotations

import pytest

from codeio_dagster.answers import MAX_REPLY_CHARS, balanced_objects, extract_answer, scan_objects


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

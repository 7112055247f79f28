"""Feedback texts and revision messages of CodeI/O++."""

from __future__ import annotations

import pytest

from codeio_dagster.feedback import (
    FEEDBACK_TEMPLATES,
    REVISION_REQUEST,
    feedback_hash,
    feedback_text,
    revision_messages,
)


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

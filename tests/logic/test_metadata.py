"""What stages report: drop reasons with example errors, per-call counters, readable cells."""

from __future__ import annotations

import json

import polars as pl

from codeio_dagster.llm import LLMSettings, llm_from_settings
from codeio_dagster.metadata import (
    cell,
    example_errors,
    io_pairs_metadata,
    llm_metadata,
    markdown_table,
)
from codeio_dagster.models import IOPairsRecord, to_frame

TRACE = (
    'Traceback (most recent call last):\n  File "<job>", line 3, in main\n'
    "TypeError: main_solution() got an unexpected keyword argument 'n'"
)


def _pairs(fid, status, detail=None, pairs=(), **counts):
    return IOPairsRecord(
        function_id=fid,
        shard="s",
        status=status,
        detail=detail,
        pairs=[{"input": i, "output": o} for i, o in pairs],
        counts=json.dumps(counts),
    )


def test_io_pairs_report_shows_causes_per_reason_per_call_counters_and_pairs():
    frame = to_frame(
        [
            _pairs("f1", "ok", pairs=[('{"x": 1}', "2"), ('{"x": 2}', "3")], generator_calls=9),
            _pairs("f2", "code_error", TRACE, generator_calls=10, dropped_exception=10),
            _pairs("f3", "code_error", "NameError: name 'np' is not defined", generator_calls=4),
            _pairs("f4", "code_error", TRACE, generator_calls=1, generator_errors=1),
        ],
        IOPairsRecord,
    )
    meta = io_pairs_metadata(4, frame)
    assert meta["rows_in"] == 4 and meta["kept"] == 1 and meta["dropped_code_error"] == 3
    reasons = meta["drop_reasons"].value
    # One line per reason, with distinct example errors named by their last traceback line.
    (line,) = [row for row in reasons.splitlines() if row.startswith("| code_error")]
    assert "| 3 |" in line
    assert "TypeError: main_solution() got an unexpected keyword argument 'n'" in line
    assert "NameError: name 'np' is not defined" in line and "Traceback" not in line
    assert meta["calls.generator_calls"] == 24 and meta["calls.dropped_exception"] == 10
    assert meta["calls.generator_errors"] == 1 and "dropped_exception" not in {
        k for k in meta if k.startswith("dropped_")
    }
    sample = meta["sample_rows"].value
    assert '| {"x": 1} | 2 |' in sample and "function_id | input | output" in sample


def test_example_errors_are_distinct_and_at_most_two_per_reason():
    frame = pl.DataFrame(
        {"status": ["bad"] * 4 + ["ok"], "error": ["a", "a", "b", "c", "not an error"]}
    )
    assert example_errors(frame, "error") == {"bad": ["a", "b"]}


def test_cells_keep_the_part_that_matters_and_shorten_ids():
    reply = "Let me think. " * 50 + 'So the answer is ```json {"output": 42}```'
    shown = cell(reply, "content")
    assert shown.startswith("…") and shown.endswith('{"output": 42}```') and len(shown) <= 240
    feedback = "Running the code on your predicted input {...} returns 7, " + "x" * 100
    assert cell(feedback, "feedback") == feedback  # whole up to the cell width
    assert cell("0123456789abcdef" * 4, "task_id") == "0123456789…"
    table = markdown_table(
        pl.DataFrame({"task_id": ["a" * 64], "content": ["x|y"]}), ["task_id", "content"]
    )
    assert "| aaaaaaaaaa… | x\\|y |" in table


def test_llm_stages_name_model_and_backend_never_a_key():
    # The resources as build_resources makes them: the settings whole, the key as a value here.
    remote_llm = llm_from_settings(
        LLMSettings(base_url="https://api.example.com:8443/v1"), api_key="sk-secret"
    )
    frame = pl.DataFrame({"model": ["gpt-x", "gpt-x", None]})
    remote = llm_metadata(remote_llm, frame)
    assert remote == {
        "model": "gpt-x",
        "backend": "openai-compatible endpoint at api.example.com:8443",
    }
    assert "sk-secret" not in json.dumps(remote)
    embedded = llm_metadata(
        llm_from_settings(LLMSettings()), pl.DataFrame({"model": []}, schema={"model": pl.String})
    )
    assert embedded["backend"].startswith("llama.cpp") and "@" in embedded["model"]

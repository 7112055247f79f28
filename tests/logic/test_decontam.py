"""13-gram decontamination against the CRUXEval fixture."""

from __future__ import annotations

import json

import pytest

from codeio_dagster.decontam import NgramIndex, load_benchmark_texts, tokens
from codeio_dagster.models import IOPairRecord
from codeio_dagster.tasks import FunctionView, OutputPrediction


@pytest.fixture(scope="module")
def crux(shared_fixtures):
    path = shared_fixtures / "cruxeval.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows, NgramIndex.from_texts(load_benchmark_texts(path), n=13)


def test_tokens_are_lowercase_alphanumeric_runs():
    assert tokens("def F(nums_1):\n  return X+2") == ["def", "f", "nums", "1", "return", "x", "2"]


def test_planted_cruxeval_function_is_caught(crux):
    rows, index = crux
    code = next(r["code"] for r in rows if len(tokens(r["code"])) > 40)
    fn = FunctionView(
        "f",
        "What does it return for `text`?",
        "`text` (str)",
        code.replace("def f(", "def main_solution("),
    )
    task = OutputPrediction().make_tasks(
        [fn],
        {"f": [IOPairRecord(input='{"text": "ab"}', output='"ab"')]},
        per_function=1,
        shard="s",
    )[0]
    hit = index.first_overlap(task.prompt)
    assert hit is not None
    assert len(hit.split()) == 13
    assert index.overlaps(task.prompt)


def test_unrelated_prompt_is_not_flagged(crux):
    _, index = crux
    fn = FunctionView(
        "g",
        "A baker splits `flour` grams into loaves of `size` grams; how many whole loaves result?",
        "`flour` (int), `size` (int); returns int",
        "def main_solution(flour, size):\n    loaves = flour // size\n    return loaves\n",
    )
    task = OutputPrediction().make_tasks(
        [fn],
        {"g": [IOPairRecord(input='{"flour": 1000, "size": 300}', output="3")]},
        per_function=1,
        shard="s",
    )[0]
    assert index.first_overlap(task.prompt) is None


def test_case_and_punctuation_do_not_hide_overlap():
    index = NgramIndex.from_texts(["the quick brown fox jumps over the lazy dog"], n=5)
    assert index.overlaps("THE QUICK, brown-fox jumps!")
    assert not index.overlaps("the quick brown cat jumps")
    assert not index.overlaps("too short")


def test_load_plain_text_and_errors(tmp_path):
    text_file = tmp_path / "bench.txt"
    text_file.write_text("one two three")
    assert load_benchmark_texts(text_file) == ["one two three"]
    nested = tmp_path / "b.jsonl"
    nested.write_text('{"a": "x", "b": {"c": ["y", 3]}}\n\n')
    assert load_benchmark_texts(nested) == ["x", "y"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2"):
        load_benchmark_texts(bad)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_benchmark_texts(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="n must be >= 1"):
        NgramIndex.from_texts(["a"], n=0)


def test_ngram_hashes_are_the_hash_of_each_ngram_joined():
    """The shipped benchmark indexes hold `_hash` of each n-gram; `_grams` (which encodes each
    token once) must give the same values, non-ASCII tokens included."""
    from codeio_dagster.decontam import _grams, _hash, tokens

    toks = tokens("def f(nums): return [x * 2 for x in nums]  # größe ÷ café 数字 " * 3)
    for n in (1, 2, 13):
        expected = [(i, _hash(tuple(toks[i : i + n]))) for i in range(len(toks) - n + 1)]
        assert list(_grams(toks, n)) == expected
    assert list(_grams(toks[:3], 13)) == []

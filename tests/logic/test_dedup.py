"""Near-duplicate detection: normalisation, signatures, the index and its stored shards."""

import textwrap

import polars as pl
import pytest

from codeio_dagster.config import ConfigError, load_config
from codeio_dagster.dedup import (
    DedupIndexStore,
    NearDuplicateIndex,
    drop_near_duplicates,
    earlier_shards,
    normalise,
    signature,
)
from codeio_dagster.models import UnifiedFunctionRecord, to_frame

ORIGINAL = textwrap.dedent(
    '''
    def main_solution(prices, budget):
        """How many items fit the budget."""
        # cheapest first
        total = 0
        count = 0
        for price in sorted(prices):
            if total + price > budget:
                break
            total += price
            count += 1
        return count
    '''
)
RENAMED = textwrap.dedent(
    """
    def main_solution(costs, limit):
        # greedy: take the cheap ones
        spent = 0
        n = 0
        for c in sorted(costs):
            if spent + c > limit:
                break  # over budget
            spent += c
            n += 1
        return n
    """
)
DIFFERENT = textwrap.dedent(
    """
    def main_solution(text):
        words = text.split()
        seen = {}
        for word in words:
            seen[word.lower()] = seen.get(word.lower(), 0) + 1
        return max(seen.items(), key=lambda kv: kv[1])[0] if seen else ""
    """
)


def test_renamed_copy_normalises_to_the_same_tokens_and_comments_do_not_count():
    assert normalise(ORIGINAL) == normalise(RENAMED)
    assert normalise(ORIGINAL) != normalise(DIFFERENT)
    tokens = normalise(ORIGINAL)
    assert "#" not in " ".join(tokens) and not any("budget" in t for t in tokens)
    # Builtins and attribute names are kept: they are what the code calls.
    assert "sorted" in tokens and "lower" in normalise(DIFFERENT)


def test_code_that_does_not_parse_falls_back_to_its_tokens():
    broken = "def f(a, b:\n    return a + b  # sum\n"
    tokens = normalise(broken)
    assert tokens[:2] == ["def", "v0"] and "#" not in tokens
    # Not even tokenizable (an unterminated triple quote): words and punctuation, renamed.
    assert normalise('x = """never closed # no comment\n') == ["v0", "=", '"', '"', '"', "v1", "v2"]


def test_index_matches_near_copies_only():
    index = NearDuplicateIndex(threshold=0.7, num_perm=128)
    index.insert("s1", "orig", signature(ORIGINAL, 128))
    match = index.query(signature(RENAMED, 128))
    assert match is not None and (match.shard, match.function_id) == ("s1", "orig")
    assert match.similarity == 1.0
    assert index.query(signature(DIFFERENT, 128)) is None
    # A one-line change is still a near copy (5-gram Jaccard 0.75); half the function changed
    # is not (0.1).
    edited = RENAMED.replace("n += 1", "n = n + 1")
    assert index.query(signature(edited, 128)) is not None
    assert index.query(signature(ORIGINAL.split("for")[0] + DIFFERENT, 128)) is None


def _frame(shard: str, codes: dict[str, str]) -> pl.DataFrame:
    return to_frame(
        [
            UnifiedFunctionRecord(
                function_id=fid,
                file_id=fid,
                shard=shard,
                status="ok",
                detail=None,
                reference_code=code,
                io_description=None,
                input_generator=None,
                problem_statement=None,
                request_hash=None,
                model=None,
            )
            for fid, code in codes.items()
        ],
        UnifiedFunctionRecord,
    )


def test_stored_index_spans_shards_and_a_rerun_does_not_match_itself(tmp_path):
    store = DedupIndexStore(tmp_path / "landing" / "_dedup")
    order = ["s1", "s2"]

    def run(shard, codes):
        return drop_near_duplicates(
            _frame(shard, codes), store, shard, order, threshold=0.8, num_perm=64
        )

    first = run("s1", {"a": ORIGINAL, "b": DIFFERENT})
    assert first["status"].to_list() == ["ok", "ok"]
    second = run("s2", {"c": RENAMED, "d": DIFFERENT + "\n# again\n", "e": "x = 1"})
    assert second["status"].to_list() == ["near_duplicate", "near_duplicate", "ok"]
    assert second["duplicate_of"].to_list() == ["a", "b", None]
    assert "function a in shard s1" in second["detail"][0]
    assert store.stored_shards() == {"s1", "s2"}
    # Rerunning either shard: s1 sees no earlier shard, s2 sees s1 only, never itself.
    assert run("s1", {"a": ORIGINAL, "b": DIFFERENT})["status"].to_list() == ["ok", "ok"]
    assert run("s2", {"e": "x = 1"})["status"].to_list() == ["ok"]
    # Within one shard the first row is kept and a later copy is dropped.
    within = run("s2", {"e": ORIGINAL.replace("# cheapest", "# x"), "f": RENAMED})
    assert within["status"].to_list() == ["near_duplicate", "near_duplicate"]
    assert within["duplicate_of"].to_list() == ["a", "a"]


def test_stored_signatures_of_another_size_are_a_clear_error(tmp_path):
    store = DedupIndexStore(tmp_path / "_dedup")
    store.save("s1", [("a", signature(ORIGINAL, 64))])
    with pytest.raises(ValueError, match="64 permutations but dedup.num_perm is 128"):
        store.load(["s1"], 0.8, 128)


def test_earlier_shards_follow_landing_order():
    assert earlier_shards(["a", "b", "a", "c"], "c") == ["a", "b"]
    assert earlier_shards(["a", "b"], "a") == []
    assert earlier_shards(["a"], "new") == ["a"]


GOOD = "sources:\n  - {name: demo, kind: folder, options: {path: corpus}}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dedup: {threshold: 0.3}\n", "dedup.threshold = 0.3"),
        ("dedup: {threshold: 1.5}\n", "dedup.threshold = 1.5"),
        ("dedup: {num_perm: 4}\n", "dedup.num_perm = 4"),
        ("dedup: {treshold: 0.9}\n", "dedup.treshold"),
    ],
)
def test_dedup_config_is_validated(tmp_path, text, expected):
    path = tmp_path / "codeio.yaml"
    path.write_text(GOOD + text)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(path)


def test_dedup_config_defaults_and_values(tmp_path):
    (tmp_path / "corpus").mkdir()  # source paths are checked at load
    path = tmp_path / "codeio.yaml"
    path.write_text(GOOD)
    assert load_config(path).dedup.enabled is False
    path.write_text(GOOD + "dedup: {enabled: true, threshold: 0.9, num_perm: 64}\n")
    dedup = load_config(path).dedup
    assert (dedup.enabled, dedup.threshold, dedup.num_perm) == (True, 0.9, 64)

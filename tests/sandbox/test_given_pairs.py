"""Imported functions in the real sandbox: given pairs re-run and kept only when they reproduce,
and generators with another name or a `random.Random` argument called by the pair harness."""

from __future__ import annotations

import json

from codeio_dagster.imported import import_function
from codeio_dagster.sandbox import FunctionSpec, IOPair, combine_for_sandbox, generate_io_pairs
from codeio_dagster.sandbox.given_pairs import GivenPairs, verify_given_pairs
from codeio_dagster.sandbox.settings import IOPairLimits
from codeio_dagster.sources.unified import UnifiedFields, unified_record

ADD = "def main_solution(a, b):\n    return a + b\n"


def _released(rows: list[dict]) -> list[GivenPairs]:
    """Rows in the CodeI/O release's columns, as the `unified` source and the import make them."""
    given = []
    for i, row in enumerate(rows):
        result = import_function(json.dumps(unified_record(row, UnifiedFields())))
        assert result.status == "ok", (i, result.detail)
        given.append(GivenPairs(id=str(i), code=result.reference_code, pairs=result.ios))
    return given


def _pair(inp, out) -> IOPair:
    return IOPair(input=json.dumps(inp), output=json.dumps(out))


def test_a_pair_that_does_not_reproduce_is_dropped_with_its_reason(executor):
    pairs = [
        _pair({"a": 1, "b": 2}, 3),
        _pair({"a": 2, "b": 2}, 5),  # stored wrongly
        _pair([1, 2], 3),  # not keyword arguments
        _pair({"a": 1, "b": 2}, 3),  # the same input again
        _pair({"a": 0, "b": 0}, None),
        _pair({"a": 3, "b": 4}, 7),
    ]
    (out,) = verify_given_pairs(executor, [GivenPairs(id="add", code=ADD, pairs=pairs)])
    assert out.status == "ok"
    assert [json.loads(p.input) for p in out.pairs] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert out.counts == {
        "given_pairs": 6,
        "main_solution_calls": 3,
        "reproduced": 2,
        "dropped_not_reproduced": 1,
        "dropped_invalid_input": 1,
        "dropped_duplicate_input": 1,
        "dropped_none_output": 1,
    }
    assert "pair 1: not_reproduced" in out.error and "gave 4, stored 5" in out.error


def test_a_function_none_of_whose_pairs_reproduce_is_dropped_with_the_reason(executor):
    # Far from every stored output: a random offset could land within the float tolerance.
    clock = "def main_solution(n):\n    return n * 10 + 7\n"
    broken = "def main_solution(n):\n    return n / 0\n"
    pairs = [_pair({"n": i}, i + 0.5) for i in range(3)]
    wandering, raising, too_few = verify_given_pairs(
        executor,
        [
            GivenPairs(id="clock", code=clock, pairs=pairs),
            GivenPairs(id="broken", code=broken, pairs=pairs),
            GivenPairs(id="one", code=ADD, pairs=[_pair({"a": 1, "b": 1}, 2)]),
        ],
        IOPairLimits(min_pairs=2),
    )
    assert (wandering.status, wandering.counts["dropped_not_reproduced"]) == ("not_reproduced", 3)
    assert wandering.pairs == []
    assert raising.status == "code_error" and "ZeroDivisionError" in raising.error
    assert (too_few.status, len(too_few.pairs)) == ("too_few_pairs", 1)


def test_released_functions_keep_the_pairs_that_reproduce(executor, shared_fixtures):
    """The CodeI/O authors' own rows: imported as they are, then their pairs re-run here."""
    rows = []
    with (shared_fixtures / "codeio_rawcode_1k_parsed.jsonl").open() as handle:
        for line in handle:
            row = json.loads(line)
            if "random" not in row["refcode"] and "time" not in row["refcode"]:
                rows.append(row)
            if len(rows) == 8:
                break
    given = _released(rows)
    outcomes = verify_given_pairs(executor, given, IOPairLimits(max_pairs=1000))
    reproduced = sum(o.counts["reproduced"] for o in outcomes)
    assert sum(o.status == "ok" for o in outcomes) >= 6
    # Every pair is accounted for: kept, or dropped under a named reason.
    for out, fn in zip(outcomes, given, strict=True):
        drops = sum(v for k, v in out.counts.items() if k.startswith("dropped_"))
        assert out.counts["reproduced"] + drops == len(fn.pairs)
        stored = {p.input: json.loads(p.output) for p in fn.pairs}
        assert all(json.loads(p.output) == stored[p.input] for p in out.pairs)
    assert reproduced > 0


GENERATOR_STYLE = {
    "reference_code": "def solve(n, step):\n    return sum(range(0, n, step))\n",
    "entry_function": "solve",
    "input_generator": (
        "def generate_inputs(rng):\n"
        "    return {'n': rng.randint(1, 10**6), 'step': rng.randint(1, 9)}\n"
    ),
    "generator_name": "generate_inputs",
    "generator_argument": "rng",
    "problem_statement": "Add every step-th number below n.",
    "io_description": "n, step: int; returns the sum.",
    "ios": None,
}


def test_a_generator_taking_a_seeded_rng_runs_in_the_pair_harness(executor):
    result = import_function(json.dumps(GENERATOR_STYLE))
    assert result.status == "ok", result.detail
    spec = FunctionSpec(
        id="rng", code=combine_for_sandbox(result.reference_code, result.input_generator)
    )
    limits = IOPairLimits(max_generator_calls=20, max_pairs=5)
    (first,) = generate_io_pairs(executor, [spec], limits)
    (again,) = generate_io_pairs(executor, [spec], limits)
    assert first.status == "ok", first.error
    assert len(first.pairs) == 5 and first.counts["generator_errors"] == 0
    # Seeded per draw: five different inputs, and the same five on a second run.
    assert len({p.input for p in first.pairs}) == 5
    assert first.pairs == again.pairs
    for pair in first.pairs:
        kwargs = json.loads(pair.input)
        assert json.loads(pair.output) == sum(range(0, kwargs["n"], kwargs["step"]))


def test_the_examples_pairs_reproduce_and_its_generator_draws(executor, project_root):
    folder = project_root / "examples" / "unified"
    lines = (folder / "released_style.jsonl").read_text().splitlines()
    given = _released([json.loads(line) for line in lines])
    for out, fn in zip(verify_given_pairs(executor, given), given, strict=True):
        assert (out.status, len(out.pairs)) == ("ok", len(fn.pairs)), out.error
    (row,) = map(json.loads, (folder / "generator_style.jsonl").read_text().splitlines())
    record = GENERATOR_STYLE | {
        "reference_code": row["code"],
        "input_generator": row["generator"],
        "problem_statement": row["question"],
        "io_description": row["io"],
    }
    result = import_function(json.dumps(record))
    spec = FunctionSpec(
        id="gcd", code=combine_for_sandbox(result.reference_code, result.input_generator)
    )
    (out,) = generate_io_pairs(executor, [spec], IOPairLimits(max_generator_calls=30))
    assert out.status == "ok" and len(out.pairs) >= 2, out.error

"""Canonical JSON policy and the CodeI/O comparison rule, on their edge cases (pure, no jail)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from codeio_dagster.sandbox import canonical_json, outputs_equal


@pytest.mark.parametrize(
    ("value", "text", "conversions"),
    [
        (None, "null", []),
        (True, "true", []),
        (3, "3", []),
        (1.0, "1.0", []),
        (-0.0, "-0.0", []),
        ("é", '"é"', []),
        ((1, (2, 3)), "[1, [2, 3]]", ["tuple->list"]),
        ({3, 1, 2}, "[1, 2, 3]", ["set->sorted list"]),
        (frozenset({"b", "a"}), '["a", "b"]', ["set->sorted list"]),
        ({1, "a"}, '["a", 1]', ["set->sorted list"]),  # unorderable: by canonical text
        (b"hi", '"hi"', ["bytes->str"]),
        (b"\xff\x00", "[255, 0]", ["bytes->list of ints"]),
        ({"b": 1, "a": 2}, '{"a": 2, "b": 1}', []),
        ({2: "x", 1: "y"}, '{"1": "y", "2": "x"}', ["dict key int->str"]),
        (
            {None: 1, True: 2},
            '{"null": 1, "true": 2}',
            ["dict key NoneType->str", "dict key bool->str"],
        ),
        (Decimal("1.5"), "1.5", ["Decimal->float"]),
        (Fraction(1, 4), "0.25", ["Fraction->float"]),
        (math.nan, "NaN", ["nan->NaN token"]),
        ([math.inf, -math.inf], "[Infinity, -Infinity]", ["inf->Infinity token"]),
    ],
)
def test_canonical_json_policy(value, text, conversions):
    assert canonical_json(value) == (text, sorted(conversions))


def test_numpy_values_become_plain_json():
    text, conv = canonical_json({"a": np.int64(3), "b": np.arange(3), "c": np.float32(0.5)})
    assert text == '{"a": 3, "b": [0, 1, 2], "c": 0.5}'
    assert conv == ["ndarray->list", "numpy.float32->float", "numpy.int64->int"]
    assert canonical_json(np.bool_(True)) == ("true", ["numpy.bool->bool"])


def test_set_order_never_depends_on_insertion_or_hash():
    a = canonical_json({"x", "y", "z", "w"})[0]
    b = canonical_json(set(reversed(["x", "y", "z", "w"])))[0]
    assert a == b == '["w", "x", "y", "z"]'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "not JSON-serialisable"),
        (1 + 2j, "not JSON-serialisable"),
        ({(1, 2): 3}, "cannot be a JSON key"),
        ({1: "a", "1": "b"}, "collide"),
        ((i for i in range(3)), "not JSON-serialisable"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_canonical_json_rejects_what_json_cannot_hold(value, message):
    with pytest.raises(ValueError, match=message):
        canonical_json(value)


def test_canonical_json_rejects_cycles():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        canonical_json(loop)


def test_canonical_text_round_trips_through_json():
    value = {"k": [1, 2.5, "s", None, True, {"n": -0.0}]}
    text, _ = canonical_json(value)
    assert json.loads(text) == value


@pytest.mark.parametrize(
    ("pred", "truth", "equal"),
    [
        (1.0005, 1.0, True),  # within 1e-3 relative, same integer part
        (1.002, 1.0, False),  # outside the tolerance
        (2.9999, 3.0, False),  # within tolerance but integer parts 2 != 3
        (3, 3.0, True),  # int vs float of the same value
        (0.0, 0.0, True),
        (1e-9, 0.0, False),  # a 0.0 target leaves no relative slack
        (-0.0, 0.0, True),
        (10**20 + 1, 10**20, False),  # ints compare exactly, never through floats
        (math.nan, math.nan, False),
        (math.inf, math.inf, False),
        (True, 1, False),  # bool is not a number here
        (1, True, False),
        (False, 0.0, False),
        (True, True, True),
        ("1", 1, False),
        (None, None, True),
        ([1, 2], [1, 2, 3], False),
        ([1.0001, [2.0]], [1, [2]], True),
        ({"a": 1, "b": [0.5]}, {"b": [0.5002], "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": {"b": math.nan}}, {"a": {"b": math.nan}}, False),
        ([1, 2], {"0": 1, "1": 2}, False),
    ],
)
def test_outputs_equal_codeio_rule(pred, truth, equal):
    assert outputs_equal(pred, truth) is equal

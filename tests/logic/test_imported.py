"""Imported unified functions: validated as refactored ones, every rejection with its reason,
and put in the form later stages call (main_solution(**input), input_generator())."""

from __future__ import annotations

import json
import random

import pytest

from codeio_dagster.imported import import_function
from codeio_dagster.refactor import REFACTOR_REASONS

BASE = {
    "reference_code": "def solve(n):\n    return n * 2\n",
    "entry_function": "solve",
    "input_generator": None,
    "generator_name": "input_generator",
    "generator_argument": "none",
    "problem_statement": "Double n.",
    "io_description": "n: int; returns int",
    "ios": [{"input": '{"n": 2}', "output": "4"}],
}


def _import(**changes):
    return import_function(json.dumps(BASE | changes))


@pytest.mark.parametrize(
    ("changes", "status", "detail"),
    [
        ({"reference_code": "def solve(n:\n"}, "syntax_error", "reference code line 1"),
        ({"reference_code": "x = " + "1+" * 200_000 + "1"}, "invalid_code", "reference code"),
        ({"entry_function": "main"}, "missing_main_solution", "no top-level function main"),
        (
            {"reference_code": "def solve(n, /):\n    return n\n"},
            "missing_main_solution",
            "positional-only",
        ),
        (
            {"reference_code": "def solve(n):\n    print(n)\n    return n\n"},
            "forbidden_io",
            "print() call",
        ),
        ({"problem_statement": "  "}, "missing_section", "problem_statement"),
        ({"io_description": None}, "missing_section", "io_description"),
        ({"ios": None}, "missing_input_generator", "no input generator and no I/O pairs"),
        (
            {"input_generator": "def make():\n    return {}\n", "generator_name": "gen"},
            "missing_input_generator",
            "no top-level function gen",
        ),
        (
            {"input_generator": "def gen(a, b):\n    return {}\n", "generator_name": "gen"},
            "missing_input_generator",
            "gen must be callable without arguments",
        ),
        (
            {
                "input_generator": "def gen():\n    return {}\n",
                "generator_name": "gen",
                "generator_argument": "rng",
            },
            "missing_input_generator",
            "gen must take one argument (a random.Random)",
        ),
        (
            {"input_generator": "import socket\ndef input_generator():\n    return {}\n"},
            "forbidden_io",
            "input generator",
        ),
        ({"input_generator": "def input_generator(:\n"}, "syntax_error", "input generator line"),
    ],
)
def test_every_rejection_has_a_known_reason_and_a_detail(changes, status, detail):
    result = _import(**changes)
    assert result.status == status and status in REFACTOR_REASONS
    assert detail in result.detail
    assert result.ios == []


def test_a_record_that_is_not_one_is_a_parse_error():
    result = import_function('{"entry_function": "f"}')
    assert result.status == "parse_error" and "reference_code" in result.detail


def test_an_entry_function_with_another_name_is_called_as_main_solution():
    result = _import()
    assert result.status == "ok" and result.detail is None
    assert result.ios == BASE["ios"] and result.input_generator is None
    namespace: dict = {}
    exec(result.reference_code, namespace)  # noqa: S102 - the test's own code
    assert namespace["main_solution"](n=21) == 42
    assert result.reference_code.startswith(BASE["reference_code"])  # the code as it came


def test_main_solution_and_input_generator_stay_as_they_are():
    code = "def main_solution(n):\n    return n\n"
    generator = "def input_generator():\n    return {'n': 1}\n"
    result = _import(reference_code=code, entry_function="main_solution", input_generator=generator)
    assert (result.reference_code, result.input_generator) == (code, generator)


def test_a_generator_taking_rng_is_called_with_a_random_seeded_from_the_module():
    generator = "def input_generator(rng):\n    return {'n': rng.randint(0, 10**9)}\n"
    result = _import(input_generator=generator, generator_argument="rng")
    assert result.status == "ok", result.detail
    namespace: dict = {}
    exec(result.input_generator, namespace)  # noqa: S102 - the test's own code

    def draw(seed):
        random.seed(seed)  # what the sandbox does before every draw
        return namespace["input_generator"]()

    assert draw(1) == draw(1) != draw(2)


def test_a_generator_with_another_name_and_no_argument_is_aliased():
    generator = "def make_case():\n    return {'n': 3}\n"
    result = _import(input_generator=generator, generator_name="make_case")
    namespace: dict = {}
    exec(result.input_generator, namespace)  # noqa: S102 - the test's own code
    assert namespace["input_generator"]() == {"n": 3}

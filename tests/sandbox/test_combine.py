"""The module a unified function becomes in the sandbox (no jail needed)."""

from __future__ import annotations

import ast

from codeio_dagster.sandbox import combine_for_sandbox

MAIN = """\
import math


def main_solution(radius, sides):
    return round(0.5 * sides * radius**2 * math.sin(2 * math.pi / sides), 4)
"""
GEN = """\
import random


def input_generator():
    return {"radius": random.uniform(1, 10), "sides": random.randint(3, 12)}
"""


def test_combined_module_defines_both_and_generator_wins():
    main = MAIN + "\ndef input_generator():\n    return {'radius': 0}\n"
    module = combine_for_sandbox(main, GEN)
    tree = ast.parse(module)
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "main_solution" in names
    namespace: dict = {}
    exec(compile(module, "<combined>", "exec"), namespace)
    kwargs = namespace["input_generator"]()
    assert set(kwargs) == {"radius", "sides"}
    assert isinstance(namespace["main_solution"](**kwargs), float)

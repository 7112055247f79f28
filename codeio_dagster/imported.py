"""Functions imported in a unified format (a `unified` source's rows): validated as refactored
ones are (the code parses, defines its entry point, does no I/O), then put in the form every
later stage calls: `main_solution(**input)` and `input_generator()`.

An entry function with another name gets an alias line; a generator with another name, or one
that takes a `random.Random`, gets a short adapter after its code. The adapter draws the Random's
seed from the module `random`, which the sandbox seeds per (function, draw), so draws stay
reproducible. Statuses are the refactor's (`REFACTOR_REASONS`), so the funnel reads the same.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field

from codeio_dagster.io_lint import find_forbidden_io
from codeio_dagster.refactor import _no_arg_problem, _top_level_function

# Part of every imported function's id: a change to the normalisation below changes the ids.
IMPORT_VERSION = "import-v1"

ENTRY = "main_solution"
GENERATOR = "input_generator"


@dataclass(frozen=True)
class ImportedFunction:
    """A record checked and normalised; `status` is "ok" or a refactor rejection reason."""

    status: str
    detail: str | None = None
    reference_code: str | None = None
    io_description: str | None = None
    input_generator: str | None = None
    problem_statement: str | None = None
    ios: list[dict[str, str]] = field(default_factory=list)


def _parse(code: str, what: str) -> ast.Module | tuple[str, str]:
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        return "syntax_error", f"{what} line {exc.lineno}: {exc.msg}"
    except (RecursionError, MemoryError, ValueError) as exc:
        return "invalid_code", f"{what}: {type(exc).__name__}: {str(exc)[:200]}"


def _rng_problem(fn: ast.FunctionDef) -> str | None:
    a = fn.args
    positional = len(a.posonlyargs) + len(a.args)
    required = positional - len(a.defaults) + sum(1 for d in a.kw_defaults if d is None)
    if (positional == 0 and a.vararg is None) or required > 1:
        return (
            f"{fn.name} must take one argument (a random.Random), as generator.argument: rng says"
        )
    return None


def entry_alias(entry: str) -> str:
    """What makes `entry` callable as main_solution (nothing when it is main_solution)."""
    if entry == ENTRY:
        return ""
    return f"\n\n# codeio: the pipeline calls main_solution(**input)\n{ENTRY} = {entry}\n"


def generator_adapter(name: str, argument: str) -> str:
    """What makes generator `name` callable as input_generator() (nothing when it already is)."""
    if argument == "rng":
        return (
            f"\n\n# codeio: input_generator() calls {name} with a random.Random whose seed comes"
            "\n# from the module random, which the sandbox seeds per draw\n"
            "import random as _codeio_random\n\n"
            f"_codeio_generator = {name}\n\n\n"
            f"def {GENERATOR}():\n"
            "    return _codeio_generator(_codeio_random.Random(_codeio_random.getrandbits(64)))\n"
        )
    if name == GENERATOR:
        return ""
    return f"\n\n# codeio: the pipeline calls input_generator()\n{GENERATOR} = {name}\n"


def import_function(content: str) -> ImportedFunction:
    """Check one landed record (see `sources.unified.unified_record`) and normalise its code."""
    try:
        record = json.loads(content)
        code: str = record["reference_code"]
        entry: str = record["entry_function"]
        generator: str | None = record.get("input_generator")
        generator_name: str = record.get("generator_name") or GENERATOR
        argument: str = record.get("generator_argument") or "none"
        ios = list(record.get("ios") or [])
        texts = {k: record.get(k) for k in ("problem_statement", "io_description")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return ImportedFunction("parse_error", f"not a unified record: {type(exc).__name__}: {exc}")
    parts = {
        "io_description": texts["io_description"],
        "problem_statement": texts["problem_statement"],
    }

    def rejected(status: str, detail: str) -> ImportedFunction:
        return ImportedFunction(
            status, detail, reference_code=code, input_generator=generator, **parts
        )

    missing = [k for k, v in texts.items() if not (isinstance(v, str) and v.strip())]
    if missing:
        return rejected("missing_section", "empty: " + ", ".join(missing))
    if generator is None and not ios:
        return rejected("missing_input_generator", "no input generator and no I/O pairs")
    tree = _parse(code, "reference code")
    if isinstance(tree, tuple):
        return rejected(*tree)
    main = _top_level_function(tree, entry)
    if main is None:
        return rejected(
            "missing_main_solution", f"the reference code defines no top-level function {entry}"
        )
    if main.args.posonlyargs:
        return rejected(
            "missing_main_solution",
            f"{entry} has positional-only parameters, so it cannot take keyword arguments",
        )
    findings = find_forbidden_io(tree, where="reference code")
    normalised_generator = None
    if generator is not None:
        gen_tree = _parse(generator, "input generator")
        if isinstance(gen_tree, tuple):
            return rejected(*gen_tree)
        gen = _top_level_function(gen_tree, generator_name)
        if gen is None:
            return rejected(
                "missing_input_generator",
                f"the generator code defines no top-level function {generator_name}",
            )
        problem = _rng_problem(gen) if argument == "rng" else _no_arg_problem(gen)
        if problem:
            if argument != "rng":
                problem = f"{generator_name} must be callable without arguments"
            return rejected("missing_input_generator", problem)
        findings += find_forbidden_io(gen_tree, where="input generator")
        normalised_generator = (
            generator.rstrip() + "\n" + generator_adapter(generator_name, argument)
        )
    if findings:
        return rejected("forbidden_io", "; ".join(findings))
    return ImportedFunction(
        "ok",
        None,
        reference_code=code.rstrip() + "\n" + entry_alias(entry),
        input_generator=normalised_generator,
        ios=ios,
        **parts,
    )

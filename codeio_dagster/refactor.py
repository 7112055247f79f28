"""The refactor stage: the prompt that turns a raw file into the unified format, and the strict
parser and validator of the model's four-section reply (DESIGN section 1, step 2).

Parsing is lenient on spelling (see `markdown`) and strict on content: the code must parse,
define the entry points and do no I/O (see `io_lint`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from codeio_dagster.io_lint import find_forbidden_io
from codeio_dagster.markdown import last_python_block, split_sections, strip_single_fence
from codeio_dagster.prompt_templates import fence_for, load_template, render, text_hash

REFACTOR_TEMPLATE_VERSION = "refactor-v3"

_TEMPLATE_FILES = ("refactor_system.md", "refactor_user.md")

# Every status a refactor reply can get, in one place (a row's `status` is one of these).
REFACTOR_REASONS: dict[str, str] = {
    "ok": "the reply has all four sections and both code blocks pass validation",
    "empty_reply": "the reply is empty or only whitespace",
    "missing_section": "a required section heading is absent or its body is empty (detail names it)",
    "missing_code_block": "the Main Function or Input Generator section holds no code block",
    "syntax_error": "a code block does not parse as Python (detail: section, line, message)",
    "parse_error": "reading the reply raised an unexpected error (detail names it): a defect in "
    "the parser, kept as the row's status so the shard goes on",
    "invalid_code": "a code block is valid grammar that Python's parser still cannot hold (an "
    "expression nested or chained too deeply, or too large)",
    "missing_main_solution": "no top-level `main_solution` that accepts keyword arguments",
    "missing_input_generator": "no top-level `input_generator` callable without arguments",
    "forbidden_io": "the code prints, reads input, touches files/network/processes, plots or "
    "exits (detail lists what and where)",
}

SECTIONS = ("main_function", "io_description", "input_generator", "problem_statement")
SECTION_TITLES = {
    "main_function": "Main Function",
    "io_description": "Input Output Description",
    "input_generator": "Input Generator",
    "problem_statement": "Problem Statement",
}
# Normalised heading text (lowercase words) -> section. Longest match first.
_HEADING_ALIASES: tuple[tuple[str, str], ...] = (
    ("input and output description", "io_description"),
    ("input output description", "io_description"),
    ("input output descriptions", "io_description"),
    ("i o description", "io_description"),
    ("io description", "io_description"),
    ("input output", "io_description"),
    ("main function", "main_function"),
    ("main solution", "main_function"),
    ("reference code", "main_function"),
    ("input generator", "input_generator"),
    ("problem statement", "problem_statement"),
    ("problem description", "problem_statement"),
    ("query", "problem_statement"),
)


def template_hash() -> str:
    """sha256 of the refactor template text; part of cache keys and the dataset card."""
    return text_hash(REFACTOR_TEMPLATE_VERSION, *(load_template(n) for n in _TEMPLATE_FILES))


def build_refactor_messages(raw_code: str, *, max_chars: int = 12000) -> list[dict[str, str]]:
    """Chat messages asking the model to refactor `raw_code` (cut at a line end past `max_chars`)."""
    if not isinstance(raw_code, str):
        raise TypeError(f"raw_code must be str, got {type(raw_code).__name__}")
    if max_chars <= 0:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    code = raw_code.strip("\n")
    if len(code) > max_chars:
        cut = code.rfind("\n", 0, max_chars)
        code = code[: cut if cut > 0 else max_chars] + "\n# ... (rest of the file omitted)"
    user = render(load_template("refactor_user.md"), code=code, fence=fence_for(code))
    return [
        {"role": "system", "content": load_template("refactor_system.md").strip()},
        {"role": "user", "content": user.strip()},
    ]


# -- validation --------------------------------------------------------------------------------


def _top_level_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node  # a later definition wins, as at run time
    return found


def _keyword_callable_problem(fn: ast.FunctionDef) -> str | None:
    if fn.args.posonlyargs:
        return "main_solution has positional-only parameters, so it cannot take keyword arguments"
    return None


def _no_arg_problem(fn: ast.FunctionDef) -> str | None:
    a = fn.args
    required = len(a.posonlyargs) + len(a.args) - len(a.defaults)
    required += sum(1 for d in a.kw_defaults if d is None)
    if required > 0:
        return "input_generator must be callable without arguments"
    return None


# -- the reply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefactorResult:
    """The parsed reply: `status` is "ok" or a REFACTOR_REASONS code; the parts found so far are
    kept even when the reply is rejected (useful to inspect rejections)."""

    status: str
    detail: str | None = None
    reference_code: str | None = None
    io_description: str | None = None
    input_generator: str | None = None
    problem_statement: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_refactor_reply(text: str | None) -> RefactorResult:
    """Parse and validate a four-section refactor reply."""
    if text is None or not text.strip():
        return RefactorResult("empty_reply", "the reply has no text")
    sections = split_sections(text, _HEADING_ALIASES)
    missing = [SECTION_TITLES[s] for s in SECTIONS if not sections.get(s, "").strip()]
    io_description = (
        strip_single_fence(sections["io_description"]) if "io_description" in sections else None
    )
    problem = (
        strip_single_fence(sections["problem_statement"])
        if "problem_statement" in sections
        else None
    )
    parts = {"io_description": io_description or None, "problem_statement": problem or None}
    if missing:
        return RefactorResult("missing_section", "missing or empty: " + ", ".join(missing), **parts)
    for name in ("io_description", "problem_statement"):
        if not parts[name]:
            return RefactorResult("missing_section", f"empty: {SECTION_TITLES[name]}", **parts)

    code: dict[str, str] = {}
    for section in ("main_function", "input_generator"):
        block = last_python_block(sections[section])
        if block is None or not block.body.strip():
            return RefactorResult(
                "missing_code_block", f"no python code block in {SECTION_TITLES[section]}", **parts
            )
        code[section] = block.body
    parts |= {"reference_code": code["main_function"], "input_generator": code["input_generator"]}

    trees: dict[str, ast.Module] = {}
    for section, source in code.items():
        try:
            trees[section] = ast.parse(source)
        except SyntaxError as exc:
            return RefactorResult(
                "syntax_error",
                f"{SECTION_TITLES[section]} line {exc.lineno}: {exc.msg}",
                **parts,
            )
        except (RecursionError, MemoryError, ValueError) as exc:
            # Valid grammar the parser still cannot hold: a 200k-term `1+1+...` chain overflows
            # the AST builder's recursion (a poisoned reply; so would the sandbox's compile).
            return RefactorResult(
                "invalid_code",
                f"{SECTION_TITLES[section]}: {type(exc).__name__}: {str(exc)[:200]}",
                **parts,
            )

    main = _top_level_function(trees["main_function"], "main_solution")
    if main is None:
        return RefactorResult(
            "missing_main_solution", "Main Function defines no top-level main_solution", **parts
        )
    if problem := _keyword_callable_problem(main):
        return RefactorResult("missing_main_solution", problem, **parts)

    gen = _top_level_function(trees["input_generator"], "input_generator")
    if gen is None:
        return RefactorResult(
            "missing_input_generator",
            "Input Generator defines no top-level input_generator",
            **parts,
        )
    if problem := _no_arg_problem(gen):
        return RefactorResult("missing_input_generator", problem, **parts)

    findings = find_forbidden_io(trees["main_function"], where="Main Function")
    findings += find_forbidden_io(trees["input_generator"], where="Input Generator")
    if findings:
        return RefactorResult("forbidden_io", "; ".join(findings), **parts)
    return RefactorResult("ok", None, **parts)

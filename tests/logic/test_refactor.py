"""The refactor prompt and the parser/validator of the model's four-section reply."""

from __future__ import annotations

import pytest

from codeio_dagster.refactor import (
    REFACTOR_REASONS,
    build_refactor_messages,
    parse_refactor_reply,
    template_hash,
)

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
IO = "Input:\n- `radius` (float): circumradius.\n- `sides` (int): number of sides.\n\nOutput: float area."
QUERY = "A gardener lays out a regular polygon bed. Given `radius` and `sides`, what is its area?"


def reply(
    main=MAIN,
    gen=GEN,
    io=IO,
    query=QUERY,
    *,
    h="##",
    titles=("Main Function", "Input Output Description", "Input Generator", "Problem Statement"),
    fence="```python",
) -> str:
    t = titles
    return (
        f"Sure! Here is the refactor.\n\n{h} {t[0]}\n{fence}\n{main}```\n\n"
        f"{h} {t[1]}\n{io}\n\n{h} {t[2]}\n{fence}\n{gen}```\n\n{h} {t[3]}\n{query}\n"
    )


def test_good_reply_is_ok_with_all_parts():
    result = parse_refactor_reply(reply())
    assert result.status == "ok", result.detail
    assert result.reference_code.strip() == MAIN.strip()
    assert result.input_generator.strip() == GEN.strip()
    assert result.io_description == IO
    assert result.problem_statement == QUERY


@pytest.mark.parametrize(
    ("h", "titles", "fence"),
    [
        (
            "###",
            ("Main Function:", "Input/Output Description", "Input Generator", "Problem Statement:"),
            "```Python",
        ),
        (
            "##",
            (
                "1. Main Function",
                "Input and Output Description",
                "Input Generator",
                "Problem Statement",
            ),
            "```py",
        ),
        ("#", ("MAIN FUNCTION", "I/O Description", "input generator", "problem statement"), "```"),
        (
            "####",
            (
                "Main Function (reference code)",
                "Input Output Description",
                "Input Generator",
                "Query",
            ),
            "```python3",
        ),
    ],
)
def test_messy_headings_and_fences_are_accepted(h, titles, fence):
    result = parse_refactor_reply(reply(h=h, titles=titles, fence=fence))
    assert result.status == "ok", result.detail
    assert "def main_solution" in result.reference_code


def test_bold_and_bare_headings_are_accepted():
    text = (
        reply()
        .replace("## Main Function", "**Main Function**")
        .replace("## Problem Statement", "Problem Statement:")
    )
    assert parse_refactor_reply(text).status == "ok"


def test_last_python_block_of_a_section_wins():
    text = reply(main="def main_solution(x):\n    return 0\n```\nAnd improved:\n```python\n" + MAIN)
    result = parse_refactor_reply(text)
    assert result.status == "ok"
    assert "math.sin" in result.reference_code


def test_headings_inside_code_are_ignored():
    main = "# Main Function\n# ## Problem Statement\n" + MAIN
    result = parse_refactor_reply(reply(main=main))
    assert result.status == "ok"
    assert result.problem_statement == QUERY


def test_echoed_example_then_answer_uses_last_sections():
    echoed = reply(main="def main_solution(a):\n    return a\n", query="Example query?")
    result = parse_refactor_reply(echoed + "\n\nNow the real answer:\n\n" + reply())
    assert result.status == "ok"
    assert result.problem_statement == QUERY


@pytest.mark.parametrize("text", [None, "", "   \n\t"])
def test_empty_reply(text):
    assert parse_refactor_reply(text).status == "empty_reply"


def test_missing_section_names_it():
    text = reply().split("## Problem Statement")[0]
    result = parse_refactor_reply(text)
    assert result.status == "missing_section"
    assert "Problem Statement" in result.detail


def test_empty_section_counts_as_missing():
    result = parse_refactor_reply(reply(io="   "))
    assert result.status == "missing_section"
    assert "Input Output Description" in result.detail


def test_missing_code_block():
    text = reply().replace("```python\n" + GEN + "```", "It returns random kwargs.")
    result = parse_refactor_reply(text)
    assert result.status == "missing_code_block"
    assert "Input Generator" in result.detail


def test_syntax_error_names_section_and_line():
    result = parse_refactor_reply(reply(main="def main_solution(x):\n    return (x +\n"))
    assert result.status == "syntax_error"
    assert result.detail.startswith("Main Function line")


def test_truncated_reply_inside_code_is_rejected():
    text = reply()
    cut = text[: text.index("random.randint")]
    result = parse_refactor_reply(cut)
    assert result.status in {"missing_section", "syntax_error"}
    assert result.status != "ok"


def test_missing_main_solution():
    result = parse_refactor_reply(reply(main="def solve(x):\n    return x\n"))
    assert result.status == "missing_main_solution"


def test_nested_main_solution_does_not_count():
    main = "class A:\n    def main_solution(self, x):\n        return x\n"
    assert parse_refactor_reply(reply(main=main)).status == "missing_main_solution"


def test_positional_only_main_solution_is_rejected():
    result = parse_refactor_reply(reply(main="def main_solution(x, /):\n    return x\n"))
    assert result.status == "missing_main_solution"
    assert "positional-only" in result.detail


def test_kwargs_main_solution_is_accepted():
    result = parse_refactor_reply(
        reply(main="def main_solution(**kwargs):\n    return len(kwargs)\n")
    )
    assert result.status == "ok"


def test_missing_input_generator():
    result = parse_refactor_reply(reply(gen="def make_input():\n    return {}\n"))
    assert result.status == "missing_input_generator"


def test_input_generator_needing_arguments_is_rejected():
    result = parse_refactor_reply(reply(gen="def input_generator(n):\n    return {'n': n}\n"))
    assert result.status == "missing_input_generator"
    assert "without arguments" in result.detail


def test_forbidden_io_in_generator_is_found():
    gen = "import random\ndef input_generator():\n    print('hi')\n    return {}\n"
    result = parse_refactor_reply(reply(gen=gen))
    assert result.status == "forbidden_io"
    assert "at Input Generator line 3" in result.detail


def test_every_reason_is_documented():
    reasons = {
        parse_refactor_reply(t).status
        for t in [
            None,
            reply().split("## Problem")[0],
            reply(main="x = 1\n```\n").replace("```python\nx = 1", "no code"),
            reply(main="def (:\n"),
            reply(main="def f():\n    pass\n"),
            reply(gen="x = 1\n"),
            reply(main="def main_solution():\n    print(1)\n"),
            reply(),
        ]
    }
    assert reasons <= set(REFACTOR_REASONS)
    assert len(reasons) >= 7


def test_messages_hold_the_code_and_the_example():
    messages = build_refactor_messages("def add(a, b):\n    return a + b\n")
    assert [m["role"] for m in messages] == ["system", "user"]
    for title in (
        "## Main Function",
        "## Input Output Description",
        "## Input Generator",
        "## Problem Statement",
    ):
        assert title in messages[0]["content"]
    assert "def add(a, b):" in messages[1]["content"]


def test_code_with_fences_and_placeholders_is_inserted_verbatim():
    code = 'DOC = """\n```python\nx = 1\n```\n"""\nT = "{{code}} {{fence}}"\n'
    content = build_refactor_messages(code)[1]["content"]
    assert code.strip() in content
    assert "````python" in content  # a longer fence than the code's own


def test_long_code_is_cut_at_a_line_end():
    code = "\n".join(f"x{i} = {i}" for i in range(5000))
    content = build_refactor_messages(code, max_chars=1000)[1]["content"]
    assert "x10 = 10" in content
    assert "x4999" not in content
    assert "rest of the file omitted" in content


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="raw_code must be str"):
        build_refactor_messages(b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_chars"):
        build_refactor_messages("x", max_chars=0)


def test_template_hash_is_stable_hex():
    assert template_hash() == template_hash()
    assert len(template_hash()) == 64


def test_the_prompt_example_itself_parses_ok():
    system = build_refactor_messages("x = 1")[0]["content"]
    example = system[system.index("a good reply is:") :]
    assert parse_refactor_reply(example).status == "ok"


def test_code_the_parser_cannot_hold_is_invalid_code_not_an_exception():
    chain = "def main_solution(x):\n    return " + "+".join(["1"] * 200_000) + "\n"
    result = parse_refactor_reply(reply(main=chain))
    assert result.status == "invalid_code"
    assert result.detail.startswith("Main Function: RecursionError")
    assert "invalid_code" in REFACTOR_REASONS

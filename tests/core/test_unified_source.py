"""The `unified` source: its options (column mapping, generator convention) and its rows,
landed as records in JSONL and Parquet tables, the CodeI/O release as it is included."""

from __future__ import annotations

import json
import textwrap

import polars as pl
import pytest
from pydantic import ValidationError

from codeio_dagster.config import ConfigError, parse_config
from codeio_dagster.sources.unified import UnifiedOptions, UnifiedSource

GENERATOR_ROWS = [
    {
        "name": "stride",
        "code": "def solve(n, step):\n    return sum(range(0, n, step))\n",
        "gen": "def generate_inputs(rng):\n    return {'n': rng.randint(1, 99), 'step': 2}\n",
        "question": "Add every step-th number below n.",
        "io": "n, step: int; returns int",
    },
    {
        "name": "no_question",
        "code": "def solve(n, step):\n    return n\n",
        "gen": "def generate_inputs(rng):\n    return {'n': 1, 'step': 1}\n",
        "question": None,
        "io": "n: int",
    },
    {"name": "code_not_text", "code": 12, "gen": None, "question": "q", "io": "d"},
]
GENERATOR_OPTIONS = {
    "columns": {
        "reference_code": "code",
        "generator": "gen",
        "problem_statement": "question",
        "io_description": "io",
        "entry_function": None,
        "ios": None,
    },
    "entry_function": "solve",
    "generator": {"name": "generate_inputs", "argument": "rng"},
    "path_column": "name",
}


def _errors(**options) -> str:
    with pytest.raises(ValidationError) as err:
        UnifiedOptions(**options)
    return str(err.value)


def test_bad_mappings_name_the_key(tmp_path):
    table = tmp_path / "t.jsonl"
    message = _errors(path=table, columns={"generator": None, "ios": None})
    assert "map `generator` or `ios`" in message
    message = _errors(path=table, columns={"reference_code": "code", "problem_statement": "code"})
    assert "columns.reference_code and columns.problem_statement both name column 'code'" in message
    assert "columns.ios" in _errors(path=table, columns={"ios": " "})
    assert "columns.refcode" in _errors(path=table, columns={"refcode": "code"})  # unknown key
    assert "entry_function must be a Python function name" in _errors(
        path=table, entry_function="main solution"
    )
    assert "generator.name must be a Python function name" in _errors(
        path=table, generator={"name": "class"}
    )
    assert "generator.argument" in _errors(path=table, generator={"argument": "seed"})
    assert "set format: jsonl or format: parquet" in _errors(path=tmp_path)
    # The defaults are the CodeI/O release's columns; a folder with its format is fine.
    options = UnifiedOptions(path=tmp_path, format="parquet")
    assert options.columns.mapped() == {
        "reference_code": "refcode",
        "entry_function": "funcname",
        "problem_statement": "problem_description",
        "io_description": "io_requirements",
        "ios": "ios",
    }


def test_config_errors_name_the_source_and_key(tmp_path):
    (tmp_path / "t.jsonl").write_text("")
    data = {
        "sources": [
            {
                "name": "mine",
                "kind": "unified",
                "options": {"path": "t.jsonl", "columns": {"generator": None, "ios": None}},
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"sources\[0\]\.options\.columns = .*map `generator` or"):
        parse_config(data, base_dir=tmp_path)
    data["sources"][0]["options"] = {"path": "t.jsonl", "generator": {"call": "rng"}}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.options\.generator\.call"):
        parse_config(data, base_dir=tmp_path)


def test_the_released_sample_lands_as_records(shared_fixtures):
    source = UnifiedSource(UnifiedOptions(path=shared_fixtures / "codeio_rawcode_1k_parsed.jsonl"))
    files = list(source.scan())
    assert len(files) == 464 and not [f for f in files if f.rejected]
    first = json.loads(files[0].content)
    with (shared_fixtures / "codeio_rawcode_1k_parsed.jsonl").open() as handle:
        row = json.loads(handle.readline())
    assert files[0].origin["format"] == "unified"
    assert first["reference_code"] == row["refcode"]
    assert first["entry_function"] == row["funcname"] == "main_solution"
    assert first["input_generator"] is None
    assert [json.loads(p["input"]) for p in first["ios"]] == [p["input"] for p in row["ios"]]
    assert [json.loads(p["output"]) for p in first["ios"]] == [p["output"] for p in row["ios"]]


def test_generator_style_rows_in_jsonl_and_parquet_land_alike(tmp_path):
    jsonl = tmp_path / "functions.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in GENERATOR_ROWS) + "{not json\n")
    parquet = tmp_path / "functions.parquet"
    pl.DataFrame(GENERATOR_ROWS[:2]).write_parquet(parquet)

    from_jsonl = list(UnifiedSource(UnifiedOptions(path=jsonl, **GENERATOR_OPTIONS)).scan())
    from_parquet = list(UnifiedSource(UnifiedOptions(path=parquet, **GENERATOR_OPTIONS)).scan())
    assert [f.path for f in from_jsonl] == [
        "functions.jsonl:0:stride",
        "functions.jsonl:1:no_question",
        "functions.jsonl:2:code_not_text",
        "functions.jsonl:3",
    ]
    assert [f.content for f in from_parquet] == [f.content for f in from_jsonl[:2]]
    record = json.loads(from_jsonl[0].content)
    assert record | {"ios": None} == {
        "reference_code": GENERATOR_ROWS[0]["code"],
        "entry_function": "solve",
        "input_generator": GENERATOR_ROWS[0]["gen"],
        "generator_name": "generate_inputs",
        "generator_argument": "rng",
        "problem_statement": GENERATOR_ROWS[0]["question"],
        "io_description": GENERATOR_ROWS[0]["io"],
        "ios": None,
    }
    # An empty statement lands (unified_functions rejects it with its reason); unreadable
    # rows are bad_row with the line and the option key.
    assert json.loads(from_jsonl[1].content)["problem_statement"] is None
    assert [(f.rejected, f.detail) for f in from_jsonl[2:]] == [
        ("bad_row", "line 3: column 'code' (columns.reference_code) is int, not text"),
        ("bad_row", from_jsonl[3].detail),
    ]
    assert from_jsonl[3].detail.startswith("line 4: not JSON")


def test_a_parquet_table_without_a_mapped_column_names_the_key(tmp_path):
    table = tmp_path / "t.parquet"
    pl.DataFrame({"code": ["def solve(): pass"], "gen": ["x"]}).write_parquet(table)
    source = UnifiedSource(UnifiedOptions(path=table, **GENERATOR_OPTIONS))
    files = list(source.scan(source.units()))
    assert files == []
    ((key, err),) = source.unit_errors
    assert key == "t.parquet"
    assert "no column 'question' (columns.problem_statement" in str(err)


def test_a_jsonl_row_with_broken_pairs_is_a_bad_row(tmp_path):
    table = tmp_path / "t.jsonl"
    rows = [
        {"refcode": "def main_solution(x): return x", "funcname": None, "ios": [{"input": {}}]},
        {"refcode": "def main_solution(x): return x", "ios": '[{"input": {"x": 1}, "output": 1}]'},
        {"refcode": "def main_solution(x): return x", "funcname": "main_solution", "ios": 3},
    ]
    for row in rows:
        row |= {"problem_description": "p", "io_requirements": "d"}
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = list(UnifiedSource(UnifiedOptions(path=table)).scan())
    assert files[0].detail == (
        "line 1: column 'ios' (columns.ios): pair 0 is not an object with `input` and `output`"
    )
    assert files[1].detail.startswith("line 2: no column 'funcname' (columns.entry_function")
    assert (
        files[2].detail
        == "line 3: column 'ios' (columns.ios) is int, not a list of input/output pairs"
    )


def test_pairs_stored_as_json_text_are_read(tmp_path):
    table = tmp_path / "t.jsonl"
    row = {
        "refcode": "def main_solution(x): return x",
        "funcname": "",
        "ios": json.dumps([{"input": {"x": 1}, "output": 1}]),
        "problem_description": "p",
        "io_requirements": "d",
    }
    table.write_text(json.dumps(row) + "\n")
    (raw,) = UnifiedSource(UnifiedOptions(path=table)).scan()
    record = json.loads(raw.content)
    assert record["ios"] == [{"input": '{"x": 1}', "output": "1"}]  # canonical JSON text
    assert record["entry_function"] == "main_solution"  # an empty cell: `entry_function`


def test_config_with_a_unified_source_loads(tmp_path):
    (tmp_path / "functions.jsonl").write_text("")
    text = textwrap.dedent(
        """
        sources:
          - name: mine
            kind: unified
            options:
              path: functions.jsonl
              columns: {reference_code: code, generator: gen, problem_statement: question,
                        io_description: io, entry_function: null, ios: null}
              entry_function: solve
              generator: {name: generate_inputs, argument: rng}
        """
    )
    import yaml

    config = parse_config(yaml.safe_load(text), base_dir=tmp_path)
    assert config.sources[0].kind == "unified"

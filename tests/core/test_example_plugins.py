"""The example plugins in examples/plugins work from a codeio.yaml, as the README shows."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from codeio_dagster.config import load_config
from codeio_dagster.models import IOPairRecord
from codeio_dagster.plugins import task_kinds
from codeio_dagster.sources import build_source
from codeio_dagster.tasks.base import FunctionView


def _project(tmp_path, project_root):
    # A config in another folder names the plugin files relative to itself.
    shutil.copytree(project_root / "examples" / "plugins", tmp_path / "plugins")
    with sqlite3.connect(tmp_path / "snippets.db") as db:
        db.execute("CREATE TABLE snippets (id INTEGER PRIMARY KEY, content TEXT)")
        db.executemany(
            "INSERT INTO snippets VALUES (?, ?)",
            [(2, "def b():\n    return 2\n"), (1, "def a():\n    return 1\n")],
        )
    (tmp_path / "codeio.yaml").write_text(
        "source_plugin_modules: [plugins/sqlite_source.py]\n"
        "sources:\n"
        "  - {name: snippets, kind: sqlite, options: {path: snippets.db, table: snippets,"
        " id_column: id}}\n"
        "tasks:\n"
        "  plugin_modules: [plugins/output_type_task.py]\n"
        "  kinds: {output_prediction: 1, output_type_prediction: 1}\n"
    )
    return load_config(tmp_path / "codeio.yaml")


def test_sqlite_source_plugin_reads_rows_in_id_order(tmp_path, project_root, monkeypatch):
    config = _project(tmp_path, project_root)
    monkeypatch.chdir(project_root)  # not the config's folder: paths must not depend on cwd
    source = build_source(config.sources[0], plugin_modules=config.source_plugin_modules)
    files = list(source.scan())
    assert [(f.path, f.content) for f in files] == [
        ("snippets:1", b"def a():\n    return 1\n"),
        ("snippets:2", b"def b():\n    return 2\n"),
    ]
    assert source.counters["rows_in"] == 2


def test_sqlite_source_plugin_closes_its_connection(tmp_path, project_root, monkeypatch):
    config = _project(tmp_path, project_root)
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", connect)
    source = build_source(config.sources[0], plugin_modules=config.source_plugin_modules)
    assert len(list(source.scan())) == 2
    (db,) = opened
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        db.execute("SELECT 1")


def test_output_type_task_plugin_builds_and_checks(tmp_path, project_root, monkeypatch):
    config = _project(tmp_path, project_root)
    monkeypatch.chdir(project_root)
    kinds = task_kinds(config.tasks.kinds, config.tasks.plugin_modules)
    fn = FunctionView(
        function_id="f",
        problem_statement="Count to n.",
        io_description="n (int) -> list of int",
        reference_code="def main_solution(n):\n    return list(range(n))",
    )
    pair = IOPairRecord.model_validate({"input": '{"n": 2}', "output": "[0, 1]"})
    (task,) = kinds["output_type_prediction"].make_tasks(
        [fn], {"f": [pair]}, per_function=1, shard="s"
    )
    assert json.loads(task.expected) == "list" and '"type"' in task.prompt
    kind = kinds["output_type_prediction"]
    assert kind.check_answer("list", task).status == "correct"
    assert kind.check_answer("object", task).status == "wrong"
    assert kind.check_answer("array", task).status == "missing_key"

"""The plugin registry: entry points, explicit registration, local-module hook, errors."""

from __future__ import annotations

import pytest

from codeio_dagster.plugins import PluginError, Registry, sources_registry, tasks_registry
from codeio_dagster.sources.base import Source
from codeio_dagster.tasks import InputPrediction, OutputPrediction, TaskKind

LOCAL_PLUGIN = """
from codeio_dagster.tasks import OutputPrediction, TaskKind


class Shout(OutputPrediction):
    name = "shout_prediction"


class Helper:
    name = "not_a_task"
"""


def test_builtin_task_kinds_are_found_through_entry_points():
    registry = Registry("codeio_dagster.tasks", TaskKind)
    assert {"output_prediction", "input_prediction"} <= set(registry.load_entry_points())
    assert registry.get("output_prediction") is OutputPrediction
    assert registry.get("input_prediction") is InputPrediction


def test_source_entry_points_are_listed():
    assert {"folder", "jsonl", "parquet", "hub"} <= set(sources_registry().names())
    assert issubclass(sources_registry().get("jsonl"), Source)


def test_a_registration_is_seen_by_every_later_lookup():
    # Plugin modules register once at config load; the assets look kinds up much later.
    class Echo(OutputPrediction):
        name = "echo_prediction"

    tasks_registry().register("echo_prediction", Echo)
    assert tasks_registry().get("echo_prediction") is Echo
    assert "echo_prediction" in tasks_registry().names()


def test_unknown_name_lists_known_names():
    registry = Registry("codeio_dagster.tasks", TaskKind)
    with pytest.raises(
        PluginError, match="unknown plugin 'nope'.*input_prediction.*output_prediction"
    ):
        registry.get("nope")


def test_register_checks_base_and_conflicts():
    registry = Registry("codeio_dagster.tasks", TaskKind)

    class Mine(OutputPrediction):
        name = "mine"

    registry.register("mine", Mine)
    assert registry.get("mine") is Mine
    assert "mine" in registry.names()
    with pytest.raises(PluginError, match="expected a subclass of"):
        registry.register("str", str)
    with pytest.raises(PluginError, match="already taken"):
        registry.register("mine", InputPrediction)
    registry.register("mine", InputPrediction, replace=True)
    assert registry.get("mine") is InputPrediction


def test_local_module_file_hook(tmp_path):
    path = tmp_path / "my_tasks.py"
    path.write_text(LOCAL_PLUGIN)
    registry = Registry("codeio_dagster.tasks", TaskKind)
    assert registry.load_module(str(path)) == ["shout_prediction"]
    cls = registry.get("shout_prediction")
    assert cls.__name__ == "Shout" and issubclass(cls, OutputPrediction)
    assert "not_a_task" not in registry.names()


def test_local_dotted_module_hook(tmp_path, monkeypatch):
    (tmp_path / "dotted_plugin_mod.py").write_text(LOCAL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("codeio_dagster.tasks", TaskKind)
    assert registry.load_module("dotted_plugin_mod") == ["shout_prediction"]


def test_local_module_errors(tmp_path):
    registry = Registry("codeio_dagster.tasks", TaskKind)
    with pytest.raises(PluginError, match="does not exist"):
        registry.load_module(str(tmp_path / "absent.py"))
    with pytest.raises(PluginError, match="not found"):
        registry.load_module("no_such_module_anywhere")
    empty = tmp_path / "empty_plugins.py"
    empty.write_text("X = 1\n")
    with pytest.raises(PluginError, match="defines no concrete subclass"):
        registry.load_module(str(empty))

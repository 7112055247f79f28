"""Unchanged work is free: code versions mark exactly what a change makes stale."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import dagster as dg
import pytest
import yaml

from codeio_dagster.assets import build_assets
from codeio_dagster.config import load_config
from codeio_dagster.funnel import shard_funnel
from codeio_dagster.landing import Landing
from codeio_dagster.partitions import shards
from codeio_dagster.resources import build_resources
from codeio_dagster.shards import land_new_shards
from codeio_dagster.versions import _stale_by_resolver, code_version, config_slice
from codeio_dagster.versions import stale_assets as _stale_assets

pytestmark = pytest.mark.sandbox


def _variant(path: str, name: str, edit) -> str:
    """A copy of the config at `path` (same folder, so relative paths hold) changed by `edit`."""
    from pathlib import Path

    data = yaml.safe_load(Path(path).read_text())
    edit(data)
    out = Path(path).with_name(name)
    out.write_text(yaml.safe_dump(data))
    return str(out)


def _graph(path: str):
    config = load_config(path)
    return config, build_assets(config)


class _CountedStorage:
    """The instance's event log storage, counting the questions asked of it."""

    def __init__(self, storage):
        self.storage, self.asked = storage, []

    def __getattr__(self, name):
        value = getattr(self.storage, name)
        if callable(value) and name.startswith(("get_", "fetch_")):

            def counted(*args, **kwargs):
                self.asked.append(name)
                return value(*args, **kwargs)

            return counted
        return value


@contextlib.contextmanager
def _counting(instance):
    """The questions asked of the instance's event log storage inside the block."""
    counted = _CountedStorage(instance.event_log_storage)
    real, instance._event_storage = instance._event_storage, counted
    try:
        yield counted.asked
    finally:
        instance._event_storage = real


# A shard's records in one question, and the asset records (for wipe times) in another.
ONE_QUESTION_PER_SHARD = ["get_asset_records", "get_event_records"]


def stale_assets(instance, graph, shard):
    """`stale_assets`, checked against Dagster's own resolver (what the UI shows) and counted."""
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    with _counting(instance) as asked:
        stale = _stale_assets(instance, graph, shard)
    assert sorted(asked) == ONE_QUESTION_PER_SHARD, asked
    definitions = [a for a in graph if isinstance(a, dg.AssetsDefinition)]
    assert stale == _stale_by_resolver(instance, AssetGraph.from_assets(definitions), shard)
    return stale


def _names(keys) -> list[str]:
    return sorted(k.to_user_string() for k in keys)


def test_config_change_marks_only_what_depends_on_it(tmp_path, scripted_llm, graph_files):
    graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    config, graph = _graph(path)
    (shard,) = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, [shard])

    everything = _names(k for a in graph for k in a.keys)
    assert _names(stale_assets(instance, graph, shard)) == everything  # nothing materialised yet
    resources = build_resources(config, path)
    assert dg.materialize(
        graph, partition_key=shard, instance=instance, resources=resources
    ).success
    assert stale_assets(instance, graph, shard) == []
    # The funnel reads every stage's report of the shard with the same two questions.
    with _counting(instance) as asked:
        funnel = shard_funnel(instance, shard, turns=1)
    assert sorted(asked) == ONE_QUESTION_PER_SHARD, asked
    assert funnel["raw_files"] == 2 and funnel["codeio_rows"] > 0

    # A checks threshold decides no asset's rows: nothing to redo.
    checks_only = _variant(path, "checks.yaml", lambda d: d.update(checks={"min_pass_rate": 0.1}))
    assert stale_assets(instance, _graph(checks_only)[1], shard) == []

    # The revision stage's sampling: the revision turn and everything that reads it.
    def hotter(data):
        data["stages"]["revision"]["temperature"] = 0.2

    revised_path = _variant(path, "revision.yaml", hotter)
    revised_config, revised = _graph(revised_path)
    stale = stale_assets(instance, revised, shard)
    assert _names(stale) == [
        "codeio_pp_dataset",
        "hub_publication",
        "responses_turn_1",
        "verdicts_turn_1",
    ]
    requests_before = len(scripted_llm.requests)
    result = dg.materialize(
        revised,
        selection=stale,
        partition_key=shard,
        instance=instance,
        resources=build_resources(revised_config, revised_path),
    )
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        k.to_user_string() for k in stale
    }
    # Only the revision turn's prompts went to the model again (its sampling changed).
    sent = scripted_llm.requests[requests_before:]
    assert sent and all(r["temperature"] == 0.2 for r in sent)
    assert stale_assets(instance, revised, shard) == []
    # Going back to the first config: the revision turn is stale again, the rest is not.
    assert _names(stale_assets(instance, graph, shard)) == _names(stale)
    # A wiped asset counts as never materialised, as in the UI: it and what reads it.
    instance.wipe_assets([dg.AssetKey("prediction_tasks")])
    assert _names(stale_assets(instance, revised, shard)) == [
        "codeio_dataset",
        "codeio_pp_dataset",
        "hub_publication",
        "prediction_tasks",
        "responses",
        "responses_turn_1",
        "verdicts",
        "verdicts_turn_1",
    ]


def test_code_version_follows_the_asset_config_keys(tmp_path, scripted_llm, graph_files):
    config = load_config(graph_files.write_config(tmp_path, scripted_llm.base_url))
    colder = config.stages.refactor.model_copy(update={"temperature": 0.1})
    other = config.model_copy(
        update={"stages": config.stages.model_copy(update={"refactor": colder})}
    )
    assert code_version(config, "unified_functions") != code_version(other, "unified_functions")
    assert code_version(config, "io_pairs") == code_version(other, "io_pairs")
    # Tables stored elsewhere are not the ones Dagster recorded: everything is stale.
    moved = config.model_copy(update={"data_dir": tmp_path / "elsewhere"})
    assert code_version(config, "io_pairs") != code_version(moved, "io_pairs")
    # The revision-turn families share their entry; an unknown asset depends on everything.
    assert config_slice(config, "responses_turn_3") == config_slice(config, "responses_turn_1")
    assert set(config_slice(config, "some_plugin_asset")) == {""}


RERUN_PROBE = """
import sys
from codeio_dagster.cli import main
code = main(["demo", "--config", sys.argv[1]])
print("dagster imported:", "dagster" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_codeio_demo_rerun_skips_the_unchanged_shard(
    tmp_path, scripted_llm, graph_files, monkeypatch, capsys
):
    import argparse

    from codeio_dagster import demo

    graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    args = argparse.Namespace(config=path)
    assert demo.run(args) == 0
    first = capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        runs = len(instance.get_runs())
    requests = len(scripted_llm.requests)

    # Nothing changed since the build left the shard fresh: the answer and the funnel are known
    # without asking the instance (which would fail here).
    def no_instance(*args, **kwargs):
        raise AssertionError("the instance was asked")

    with monkeypatch.context() as patched:
        patched.setattr(dg.DagsterInstance, "get", no_instance)
        assert demo.run(args) == 0
    again = capsys.readouterr().out
    assert "nothing changed since a build found every shard up to date" in again
    assert (
        again[again.index("\nfunnel") : again.index("elapsed")]
        == (first[first.index("\nfunnel") : first.index("elapsed")])
    )
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs  # no run launched for the unchanged shard
    assert len(scripted_llm.requests) == requests

    # As a user reruns it, in a process of its own: the shortcut does not even import Dagster
    # (the config is validated without it), which was most of an unchanged rerun's second.
    rerun = subprocess.run(
        [sys.executable, "-c", RERUN_PROBE, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "nothing changed since a build found every shard up to date" in rerun.stdout
    assert rerun.stderr.strip().splitlines()[-1] == "dagster imported: False", rerun.stderr

    # The instance changed (an asset wiped, as in the UI): it is asked, and that asset rebuilt.
    with dg.DagsterInstance.get() as instance:
        instance.wipe_assets([dg.AssetKey("hub_publication")])
    assert demo.run(args) == 0
    assert "launching a run of codeio_job for 1 stale stage(s)" in capsys.readouterr().out
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_runs()) == runs + 1
    # And a config change that makes a stage stale is seen without any instance change.
    _variant(path, "codeio.yaml", lambda d: d["publish"].update(local_dir="published2"))
    assert demo.run(args) == 0
    assert "launching a run of codeio_job for 1 stale stage(s)" in capsys.readouterr().out


def test_new_rows_from_the_same_code_make_their_readers_stale(tmp_path, graph_files, monkeypatch):
    from tests.graph.conftest import ScriptedLLM, reply_for

    monkeypatch.setenv("CODEIO_TEST_KEY", "test-key-not-secret")
    replies = [reply_for]
    llm = ScriptedLLM(reply=lambda messages: replies[0](messages))
    try:
        graph_files.write_corpus(tmp_path / "corpus", ["alpha"])
        path = _variant(
            graph_files.write_config(tmp_path, llm.base_url, shard_size=10),
            "nocache.yaml",
            lambda d: d["llm"].update(use_cache=False),
        )
        config, graph = _graph(path)
        (shard,) = [s.name for s in land_new_shards(config, Landing(config.data_dir / "landing"))]
        instance = dg.DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(shards.name, [shard])
        resources = build_resources(config, path)
        run = {"instance": instance, "resources": resources, "partition_key": shard}
        assert dg.materialize(graph, **run).success

        # Same code, same config, same inputs: only the content tells that the answers changed.
        replies[0] = lambda messages: 'Surely 0.\n```json\n{"output": 0}\n```'
        assert dg.materialize(graph, selection=[dg.AssetKey("responses")], **run).success
        stale = _names(stale_assets(instance, graph, shard))
        assert "responses" not in stale
        assert {"verdicts", "codeio_dataset", "hub_publication"} <= set(stale)

        # Materialised again with the rows it had: nothing downstream to redo.
        assert dg.materialize(graph, selection=stale, **run).success
        assert dg.materialize(graph, selection=[dg.AssetKey("responses")], **run).success
        assert stale_assets(instance, graph, shard) == []
    finally:
        llm.close()


def test_the_up_to_date_stamp_is_taken_once_the_runs_processes_are_gone(
    tmp_path, scripted_llm, graph_files, monkeypatch
):
    """A run's process stores one more event after the run's end, and the code server reads the
    finished run once more: a stamp taken before that would not match the files a moment later,
    and the next unchanged build would miss the shortcut."""
    import argparse

    from codeio_dagster import build, demo

    graph_files.write_corpus(tmp_path / "corpus", ["alpha", "beta"])
    path = graph_files.write_config(tmp_path, scripted_llm.base_url, shard_size=10)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    seen = []
    real = build.write_up_to_date

    def stamping(home, stamp, funnel):
        servers = [
            pid for pid in os.listdir("/proc") if pid.isdigit() and _is_our_code_server(int(pid))
        ]
        with dg.DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            last = instance.get_records_for_run(run.run_id).records[-1].event_log_entry
        seen.append((servers, last.message))
        real(home, stamp, funnel)

    monkeypatch.setattr(build, "write_up_to_date", stamping)
    assert demo.run(argparse.Namespace(config=path)) == 0
    ((servers, last_message),) = seen
    assert servers == [], "the code server still ran when the stamp was taken"
    assert last_message.startswith("Process for run exited")


def _is_our_code_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return parent == os.getpid() and b"codeio_dagster.warm_runs" in cmdline

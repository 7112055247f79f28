"""build_resources: every resource key, each implementation picked from codeio.yaml."""

from __future__ import annotations

import dagster as dg
import pytest

from codeio_dagster.config import CodeioConfig
from codeio_dagster.llm import EmbeddedLLM, LLMResource, RemoteLLM
from codeio_dagster.publish import HubPublisher, LocalFolderPublisher, PublisherResource
from codeio_dagster.resources import CodeioResource, build_resources
from codeio_dagster.sandbox.resources import (
    NsjailSandbox,
    SandboxResource,
    UnsafeSubprocessSandbox,
)

SOURCES = [{"name": "t", "kind": "folder", "options": {"path": "corpus"}}]


@pytest.mark.parametrize(
    ("extra", "llm", "sandbox", "publisher"),
    [
        ({}, EmbeddedLLM, NsjailSandbox, LocalFolderPublisher),
        (
            {
                "llm": {"base_url": "http://127.0.0.1:9/v1"},
                "sandbox": "unsafe_subprocess",
                "publish": {"target": "hub", "repo_id": "o/d"},
            },
            RemoteLLM,
            UnsafeSubprocessSandbox,
            HubPublisher,
        ),
    ],
)
def test_each_resource_key_gets_the_implementation_the_config_selects(
    extra, llm, sandbox, publisher
):
    config = CodeioConfig.model_validate({"sources": SOURCES, **extra})
    resources = build_resources(config, "codeio.yaml")
    assert set(resources) == {"codeio", "llm", "sandbox", "publisher", "io_manager"}
    assert type(resources["codeio"]) is CodeioResource
    assert type(resources["llm"]) is llm
    assert type(resources["sandbox"]) is sandbox
    assert type(resources["publisher"]) is publisher
    # Each resource holds its section of the config, made Dagster config with the same values.
    for key, section in (
        ("sandbox", config.sandbox),
        ("llm", config.llm),
        ("publisher", config.publish),
    ):
        assert isinstance(resources[key].settings, dg.Config)
        assert resources[key].settings.model_dump() == section.model_dump()
    assert resources["codeio"].config == config


CONFIG_PROBE = """
import sys
from codeio_dagster.config import load_config
config = load_config(sys.argv[1])
print(config.llm.max_concurrency, config.sandbox.mode, config.publish.target)
print("dagster imported:", "dagster" in sys.modules)
"""


def test_the_config_is_validated_without_importing_dagster():
    """codeio.yaml is validated into plain pydantic sections (Dagster costs an unchanged build
    most of its time); the resources make them Dagster config."""
    import subprocess
    import sys
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "codeio.yaml"
    done = subprocess.run(
        [sys.executable, "-c", CONFIG_PROBE, str(shipped)],
        cwd=shipped.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    *_, values, imported = done.stdout.strip().splitlines()
    assert values == "4 nsjail local"  # as the shipped codeio.yaml sets them
    assert imported == "dagster imported: False"


def test_secrets_are_handed_over_as_env_vars_and_never_as_values(monkeypatch):
    monkeypatch.setenv("CODEIO_TEST_REMOTE_KEY", "value-that-must-not-be-stored")
    monkeypatch.setenv("HF_TOKEN", "another-value-that-must-not-be-stored")
    config = CodeioConfig.model_validate(
        {
            "sources": SOURCES,
            "llm": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "CODEIO_TEST_REMOTE_KEY"},
            "publish": {"target": "hub", "repo_id": "o/d"},
        }
    )
    resources = build_resources(config, "codeio.yaml")
    assert resources["llm"].api_key == dg.EnvVar("CODEIO_TEST_REMOTE_KEY")
    assert resources["llm"].settings.base_url == "http://127.0.0.1:9/v1"
    assert resources["publisher"].token == dg.EnvVar("HF_TOKEN")
    assert "must-not-be-stored" not in repr(resources)


def test_a_remote_endpoint_without_its_key_fails_naming_the_variable(monkeypatch):
    monkeypatch.delenv("CODEIO_TEST_REMOTE_KEY", raising=False)
    config = CodeioConfig.model_validate(
        {
            "sources": SOURCES,
            "llm": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "CODEIO_TEST_REMOTE_KEY"},
        }
    )
    llm = build_resources(config, "codeio.yaml")["llm"]
    with pytest.raises(ValueError, match="set the environment variable CODEIO_TEST_REMOTE_KEY"):
        llm.complete_many([])


def test_a_setting_given_as_run_config_reaches_the_asset_and_is_validated():
    # What the Dagster UI's launchpad sends: the section under `settings`, same names as YAML.
    config = CodeioConfig.model_validate({"sources": SOURCES, "sandbox": "unsafe_subprocess"})
    seen = {}

    @dg.asset
    def probe(sandbox: SandboxResource, llm: LLMResource, publisher: PublisherResource) -> None:
        seen["sandbox"], seen["llm"] = sandbox.settings, llm.settings
        seen["publisher"] = publisher.settings

    resources = build_resources(config, "codeio.yaml")
    used = {key: resources[key] for key in ("sandbox", "llm", "publisher")}
    overrides = {
        "sandbox": {"config": {"settings": {"mode": "unsafe_subprocess", "tmpfs_mb": 32}}},
        "llm": {"config": {"settings": {"max_retries": 2, "local_model": {"n_parallel": 2}}}},
        "publisher": {"config": {"settings": {"pretty_name": "Mine", "tags": ["code"]}}},
    }
    result = dg.materialize([probe], resources=used, run_config={"resources": overrides})
    assert result.success
    assert seen["sandbox"].tmpfs_mb == 32 and seen["sandbox"].mode == "unsafe_subprocess"
    assert seen["llm"].max_retries == 2 and seen["llm"].local_model.n_parallel == 2
    assert seen["publisher"].pretty_name == "Mine" and seen["publisher"].tags == ["code"]

    # The section's own validators run on run config too, naming the field.
    overrides["sandbox"]["config"]["settings"]["runtime_dir"] = "relative"
    with pytest.raises(dg.DagsterResourceFunctionError) as failure:
        dg.materialize([probe], resources=used, run_config={"resources": overrides})
    assert "runtime_dir must be an absolute path" in str(failure.value.__cause__)
    del overrides["sandbox"]["config"]["settings"]["runtime_dir"]
    overrides["publisher"]["config"]["settings"]["local_dir"] = "gs://bucket/out"
    with pytest.raises(dg.DagsterResourceFunctionError) as failure:
        dg.materialize([probe], resources=used, run_config={"resources": overrides})
    assert "unsupported scheme 'gs'" in str(failure.value.__cause__)

"""build_resources: every resource key, each implementation picked from codeio.yaml."""

from __future__ import annotations

import pytest

from codeio_dagster.config import CodeioConfig
from codeio_dagster.llm import EmbeddedLLM, RemoteLLM
from codeio_dagster.publish import HubPublisher, LocalFolderPublisher
from codeio_dagster.resources import CodeioResource, build_resources
from codeio_dagster.sandbox.resources import NsjailSandbox, UnsafeSubprocessSandbox

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
    assert resources["sandbox"].settings() == config.sandbox

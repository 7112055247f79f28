"""One repo-id rule and one HF_ENDPOINT resolution, used by the publisher, its settings and the
Hub source alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from codeio_dagster.hfhub import DEFAULT_ENDPOINT, check_repo_id, hub_endpoint
from codeio_dagster.publish import HubPublisher, PublishSettings
from codeio_dagster.sources.hub import HubSourceOptions

GOOD = ["owner/name", "o/d", "Org-1/data.set_v2"]
BAD = ["name", "/name", "owner/", "owner/name/extra", "-owner/name", "owner/.name", "a b/c"]


@pytest.mark.parametrize("repo_id", GOOD)
def test_every_place_accepts_an_owner_name_repo_id(repo_id):
    assert check_repo_id(repo_id) == repo_id
    assert PublishSettings(target="hub", repo_id=repo_id).repo_id == repo_id
    assert HubSourceOptions(repo_id=repo_id).repo_id == repo_id


@pytest.mark.parametrize("repo_id", BAD)
def test_every_place_refuses_the_same_bad_repo_id_naming_its_field(repo_id):
    with pytest.raises(ValueError, match="repo_id .* must look like 'owner/name'"):
        check_repo_id(repo_id)
    with pytest.raises(ValidationError, match="publish.repo_id"):
        PublishSettings(target="hub", repo_id=repo_id)
    with pytest.raises(ValidationError, match="hub source repo_id"):
        HubSourceOptions(repo_id=repo_id)
    # A publisher takes the validated section, so it cannot be built with a bad repo id.
    with pytest.raises(ValidationError, match="must look like 'owner/name'"):
        HubPublisher(settings={"target": "hub", "repo_id": repo_id})


def test_the_endpoint_is_the_explicit_one_else_hf_endpoint_read_at_call_time(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub_endpoint() == DEFAULT_ENDPOINT
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert hub_endpoint() == "http://127.0.0.1:9"
    assert (
        HubPublisher(settings=PublishSettings(target="hub", repo_id="o/d")).resolved_endpoint()
        == "http://127.0.0.1:9"
    )
    assert hub_endpoint("https://hub.example/") == "https://hub.example"

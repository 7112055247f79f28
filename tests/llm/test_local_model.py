"""The real embedded model (xllamacpp + pinned GGUF) through LLMResource inside a Dagster run."""

import socket
from urllib.parse import urlparse

import dagster as dg
import pytest

from codeio_dagster.llm import (
    EMBEDDED_MODEL_ALIAS,
    ChatRequest,
    LLMResource,
    LLMSettings,
    SamplingParams,
    embedded_model_id,
)

pytestmark = pytest.mark.model


def _listening(base_url: str) -> bool:
    u = urlparse(base_url)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((u.hostname, u.port)) == 0


def test_real_model_replies_through_the_resource_and_stops_at_teardown(tmp_path):
    pytest.importorskip("xllamacpp", reason="the local-model extra is not installed")
    seen: dict = {}
    request = ChatRequest(
        key="row-1",
        messages=[{"role": "user", "content": "Reply with the single word: yes"}],
        params=SamplingParams(temperature=0.0, max_tokens=16),
    )

    @dg.asset
    def answer(context: dg.AssetExecutionContext, llm: LLMResource) -> dg.MaterializeResult:
        outcomes, stats = llm.complete_many([request], log=context.log)
        seen["outcome"] = outcomes[0]
        seen["base_url"] = llm.local_server.base_url
        seen["listening"] = _listening(seen["base_url"])
        again, stats2 = llm.complete_many([request])
        seen["again"] = again[0]
        seen["stats2"] = stats2
        return dg.MaterializeResult(metadata=stats.as_metadata())

    # Weights go to the default cache folder (assembled once per machine); the request cache
    # is private to this test.
    llm = LLMResource.from_settings(
        LLMSettings(cache_path=tmp_path / "llm_cache.sqlite", timeout_s=120)
    )
    result = dg.materialize([answer], resources={"llm": llm})
    assert result.success

    out = seen["outcome"]
    assert out.status in {"ok", "truncated"}, out.error
    assert out.content and out.content.strip()
    # Recorded with the pinned weights' hash, which is also what the cache key names.
    assert out.model == embedded_model_id() and out.model.startswith(EMBEDDED_MODEL_ALIAS + "@")
    assert out.prompt_tokens > 0 and 0 < out.completion_tokens <= 16
    assert (out.cached, out.attempts) == (False, 1)
    assert seen["listening"]
    assert seen["again"].cached and seen["again"].content == out.content
    assert seen["stats2"].cache_hits == 1

    meta = result.asset_materializations_for_node("answer")[0].metadata
    assert meta["llm_cache_misses"].value == 1
    # teardown_after_execution stopped the server: nothing listens on its port any more.
    assert not _listening(seen["base_url"])

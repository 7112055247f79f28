"""RequestBatch's steps on their own: a cache that cannot store never costs a reply."""

from __future__ import annotations

import asyncio
import logging

from codeio_dagster.llm import ChatRequest, LLMSettings, ResponseCache, SamplingParams
from codeio_dagster.llm.client import RequestBatch
from codeio_dagster.llm.wire import Endpoint

MODEL = "scripted-model"


class UnreachableCacheOnWrite(ResponseCache):
    """A real SQLite cache whose writes fail as a networked cache's do when its server goes
    away mid-run (a fault a local file cannot produce on demand)."""

    def put(self, record):
        raise ConnectionError("cache server closed the connection")


def req(prompt: str) -> ChatRequest:
    return ChatRequest(
        key=prompt,
        messages=[{"role": "user", "content": prompt}],
        params=SamplingParams(model=MODEL, max_tokens=32),
    )


def test_a_failing_cache_write_keeps_the_reply_and_says_so(scripted_server, tmp_path, caplog):
    scripted_server.script.update({"a": [("ok", "answer a")], "b": [("ok", "answer b")]})
    settings = LLMSettings(base_url=scripted_server.base_url, max_retries=0)
    with UnreachableCacheOnWrite(tmp_path / "cache.sqlite") as cache:
        batch = RequestBatch(
            [req("a"), req("b")], settings=settings, default_model=None, cache=cache
        )
        with caplog.at_level(logging.WARNING):
            outcomes, stats = asyncio.run(
                batch.run(lambda: Endpoint(scripted_server.base_url, "test-key"))
            )
    assert [(o.status, o.content) for o in outcomes] == [("ok", "answer a"), ("ok", "answer b")]
    assert stats.by_status["ok"] == 2
    assert (
        "LLM cache write failed for 'a'" in caplog.text and "closed the connection" in caplog.text
    )


def test_look_up_then_deduplicate_send_each_distinct_request_once(tmp_path):
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1")
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        batch = RequestBatch(
            [req("x"), req("y"), req("x")], settings=settings, default_model=None, cache=cache
        )
        misses = batch.look_up()
        to_send = batch.deduplicate(misses)
    assert misses == [0, 1, 2]
    assert len(to_send) == 2 and batch.groups[to_send[0]] == [0, 2]
    assert (batch.stats.cache_hits, batch.stats.cache_misses) == (1, 2)

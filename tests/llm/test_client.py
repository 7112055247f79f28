"""LLMResource against a scripted OpenAI-compatible server over real sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeio_dagster.llm import (
    EMBEDDED_MODEL_ALIAS,
    ChatRequest,
    LLMResource,
    LLMSettings,
    LocalModelServer,
    Price,
    SamplingParams,
)

MODEL = "scripted-model"


def make_resource(server, tmp_path: Path, **overrides) -> LLMResource:
    settings = dict(
        base_url=server.base_url,
        max_concurrency=8,
        max_retries=5,
        timeout_s=1.5,
        backoff_base_s=0.01,
        backoff_max_s=5.0,
        cache_path=tmp_path / "cache.sqlite",
        prices={MODEL: Price(input_per_mtok=1.0, output_per_mtok=2.0)},
    )
    settings.update(overrides)
    return LLMResource.from_settings(LLMSettings(**settings), api_key="sk-test-key-0001")


def req(prompt: str, key: str | None = None, **params) -> ChatRequest:
    return ChatRequest(
        key=key or prompt,
        messages=[{"role": "user", "content": prompt}],
        params=SamplingParams(model=MODEL, max_tokens=32, **params),
    )


FAULT_SCRIPT = {
    "ok": [("ok", "plain answer")],
    "r429": [("status", 429, {"Retry-After": "1"}), ("ok", "after 429")],
    "r500": [("status", 500), ("status", 503), ("ok", "after two 5xx")],
    "reset": [("reset",), ("ok", "after reset")],
    "slow": [("slow", 4.0, "too late"), ("ok", "after timeout")],
    "length": [("length", "cut off mid")],
    "malformed": [("malformed",)],
    "always500": [("status", 500)],
    "r400": [("status", 400)],
}


def test_every_fault_ends_in_its_recorded_outcome(scripted_server, tmp_path):
    scripted_server.script.update(FAULT_SCRIPT)
    llm = make_resource(scripted_server, tmp_path, max_retries=3)
    requests = [req(p) for p in FAULT_SCRIPT]
    outcomes, stats = llm.complete_many(requests)

    assert [o.key for o in outcomes] == list(FAULT_SCRIPT)
    got = {o.key: (o.status, o.content, o.attempts) for o in outcomes}
    assert got == {
        "ok": ("ok", "plain answer", 1),
        "r429": ("ok", "after 429", 2),
        "r500": ("ok", "after two 5xx", 3),
        "reset": ("ok", "after reset", 2),
        "slow": ("ok", "after timeout", 2),
        "length": ("truncated", "cut off mid", 1),
        "malformed": ("request_failed", None, 2),
        "always500": ("request_failed", None, 4),
        "r400": ("request_failed", None, 1),
    }
    by_key = {o.key: o for o in outcomes}
    assert by_key["length"].finish_reason == "length"
    assert "malformed reply" in by_key["malformed"].error
    assert "HTTP 500" in by_key["always500"].error
    assert "after 4 attempts" in by_key["always500"].error
    assert "HTTP 400" in by_key["r400"].error
    assert all(o.error is None for o in outcomes if o.status != "request_failed")
    # Server side: each prompt arrived exactly as often as the client says it tried.
    for o in outcomes:
        assert len(scripted_server.times(o.key)) == o.attempts, (o, scripted_server.times(o.key))
    assert stats.retries == sum(o.attempts - 1 for o in outcomes) == 9
    assert stats.by_status == {"ok": 5, "truncated": 1, "request_failed": 3}
    assert (stats.cache_hits, stats.cache_misses) == (0, 9)
    assert stats.cost_usd == pytest.approx(
        sum(o.prompt_tokens * 1e-6 + o.completion_tokens * 2e-6 for o in outcomes)
    )
    assert stats.cost_usd > 0


def test_retry_after_is_honoured(scripted_server, tmp_path):
    scripted_server.script["r429"] = [("status", 429, {"Retry-After": "1"}), ("ok", "fine")]
    scripted_server.script["r429date"] = [
        ("status", 429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        ("ok", "fine"),
    ]
    llm = make_resource(scripted_server, tmp_path)
    outcomes, _ = llm.complete_many([req("r429"), req("r429date")])
    assert [o.status for o in outcomes] == ["ok", "ok"]
    first, second = scripted_server.times("r429")
    # backoff_base_s is 0.01, so only the header can explain a gap of a second.
    assert second - first >= 1.0
    # A date in the past means "now": retried after the tiny backoff, not a minute.
    first, second = scripted_server.times("r429date")
    assert second - first < 2.5


def test_retry_after_is_capped_by_backoff_max(scripted_server, tmp_path):
    scripted_server.script["r429"] = [("status", 429, {"Retry-After": "3600"}), ("ok", "fine")]
    llm = make_resource(scripted_server, tmp_path, backoff_max_s=0.2)
    outcomes, _ = llm.complete_many([req("r429")])
    assert outcomes[0].status == "ok"
    first, second = scripted_server.times("r429")
    assert 0.2 <= second - first < 30


def test_second_run_is_served_from_cache_without_any_request(scripted_server, tmp_path):
    requests = [req(f"question {i}") for i in range(20)] + [req("cut")]
    scripted_server.script["cut"] = [("length", "half an ans")]
    out1, stats1 = make_resource(scripted_server, tmp_path).complete_many(requests)
    assert scripted_server.count() == 21
    assert (stats1.cache_hits, stats1.cache_misses) == (0, 21)

    # A new resource (a re-run, or a run after a crash) on the same cache file.
    out2, stats2 = make_resource(scripted_server, tmp_path).complete_many(requests)
    assert scripted_server.count() == 21
    assert (stats2.cache_hits, stats2.cache_misses) == (21, 0)
    assert all(o.cached and o.attempts == 0 for o in out2)
    assert [(o.key, o.status, o.content, o.request_hash) for o in out2] == [
        (o.key, o.status, o.content, o.request_hash) for o in out1
    ]
    assert out2[-1].status == "truncated"
    assert (stats2.prompt_tokens, stats2.completion_tokens, stats2.cost_usd) == (0, 0, 0.0)


def test_failed_requests_are_not_cached_and_are_retried_on_rerun(scripted_server, tmp_path):
    scripted_server.script["flaky"] = [("status", 500), ("status", 500), ("ok", "third time")]
    llm = make_resource(scripted_server, tmp_path, max_retries=1)
    out1, _ = llm.complete_many([req("good"), req("flaky")])
    assert [o.status for o in out1] == ["ok", "request_failed"]
    assert scripted_server.count() == 3

    out2, stats2 = llm.complete_many([req("good"), req("flaky")])
    assert [(o.status, o.cached) for o in out2] == [("ok", True), ("ok", False)]
    assert scripted_server.times("good").__len__() == 1
    assert (stats2.cache_hits, stats2.cache_misses) == (1, 1)


def test_identical_requests_in_one_call_are_sent_once(scripted_server, tmp_path):
    llm = make_resource(scripted_server, tmp_path)
    requests = [req("same", key=f"row{i}") for i in range(5)] + [req("same", key="s1", seed=1)]
    outcomes, stats = llm.complete_many(requests)
    assert [o.key for o in outcomes] == [f"row{i}" for i in range(5)] + ["s1"]
    assert len(scripted_server.times("same")) == 2  # seed 0 once, seed 1 once
    assert [o.cached for o in outcomes] == [False, True, True, True, True, False]
    assert (stats.cache_hits, stats.cache_misses) == (4, 2)


def test_requests_per_minute_limit(scripted_server, tmp_path):
    # 240/min = 4 per second with a burst of one second's worth (4).
    llm = make_resource(scripted_server, tmp_path, requests_per_minute=240, max_concurrency=16)
    outcomes, _ = llm.complete_many([req(f"q{i}") for i in range(10)])
    assert all(o.status == "ok" for o in outcomes)
    times = sorted(a.t for a in scripted_server.arrivals)
    for k in range(4, 10):
        assert times[k] - times[0] >= (k - 3) / 4 - 0.05, (k, times[k] - times[0])


def test_tokens_per_minute_limit(scripted_server, tmp_path):
    # Each request reserves its max_tokens (32) plus a small prompt estimate (~5); 2,400
    # tokens/min is 40/s with a burst of 40, so one request passes per second.
    llm = make_resource(scripted_server, tmp_path, tokens_per_minute=2400, max_concurrency=8)
    outcomes, _ = llm.complete_many([req(f"t{i}") for i in range(3)])
    assert all(o.status == "ok" for o in outcomes)
    times = sorted(a.t for a in scripted_server.arrivals)
    assert times[2] - times[0] >= 1.0


def test_model_is_sent_and_sampling_params_reach_the_server(scripted_server, tmp_path):
    llm = make_resource(scripted_server, tmp_path)
    llm.complete_many([req("p", temperature=0.2, top_p=0.9, seed=7, stop=["###"])])
    body = scripted_server.arrivals[0].body
    assert body["model"] == MODEL
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        0.2,
        0.9,
        7,
        ["###"],
    )
    assert body["max_tokens"] == 32


def test_api_key_never_leaks(scripted_server, tmp_path, monkeypatch):
    secret = "sk-live-VERYSECRET-abcdef123456"
    scripted_server.script["auth"] = [("echo_auth", 401)]
    llm = LLMResource.from_settings(
        LLMSettings(base_url=scripted_server.base_url, cache_path=tmp_path / "c.sqlite"),
        api_key=secret,
    )
    outcomes, stats = llm.complete_many([req("auth")])
    # The key did reach the server, and the server echoed it back in its error body...
    assert scripted_server.arrivals[0].authorization == f"Bearer {secret}"
    assert outcomes[0].status == "request_failed"
    # ...yet it appears nowhere the user can see it.
    shown = [
        repr(llm),
        str(llm),
        json.dumps(stats.as_metadata()),
        outcomes[0].model_dump_json(),
        repr(llm.settings()),
    ]
    for text in shown:
        assert secret not in text
    assert "***" in outcomes[0].error

    monkeypatch.delenv("CODEIO_TEST_MISSING_KEY", raising=False)
    keyless = LLMResource(base_url=scripted_server.base_url, api_key_env="CODEIO_TEST_MISSING_KEY")
    with pytest.raises(ValueError, match="set the environment variable CODEIO_TEST_MISSING_KEY"):
        keyless.complete_many([req("x")])

    monkeypatch.setenv("CODEIO_TEST_KEY", secret)
    from_env = LLMResource(
        base_url=scripted_server.base_url,
        api_key_env="CODEIO_TEST_KEY",
        cache_path=str(tmp_path / "c2.sqlite"),
    )
    out, _ = from_env.complete_many([req("from env")])
    assert out[0].status == "ok"
    assert scripted_server.arrivals[-1].authorization == f"Bearer {secret}"
    assert secret not in repr(from_env)


def test_null_model_with_a_remote_endpoint_is_refused_before_sending(scripted_server, tmp_path):
    llm = make_resource(scripted_server, tmp_path)
    bad = ChatRequest(key="row7", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="request 'row7': params.model is null"):
        llm.complete_many([bad])
    assert scripted_server.count() == 0


def test_fully_cached_rerun_never_starts_the_embedded_model(scripted_server, tmp_path, monkeypatch):
    # Fill the cache through an endpoint that answers as the embedded model's alias.
    requests = [
        ChatRequest(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"cached {i}"}],
            params=SamplingParams(model=EMBEDDED_MODEL_ALIAS, max_tokens=8),
        )
        for i in range(3)
    ]
    make_resource(scripted_server, tmp_path).complete_many(requests)

    def tripwire(self):
        raise AssertionError("the embedded model must not start for a fully cached run")

    monkeypatch.setattr(LocalModelServer, "start", tripwire)
    local = LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite"))
    # params.model=None resolves to the embedded alias, so the keys match the cached ones.
    unnamed = [r.model_copy(update={"params": SamplingParams(max_tokens=8)}) for r in requests]
    outcomes, stats = local.complete_many(unnamed)
    assert all(o.cached for o in outcomes)
    assert stats.cache_hits == 3
    assert local.local_server is None


def test_cache_disabled_sends_every_time(scripted_server, tmp_path):
    llm = make_resource(scripted_server, tmp_path, use_cache=False)
    llm.complete_many([req("a")])
    llm.complete_many([req("a")])
    assert len(scripted_server.times("a")) == 2
    assert not (tmp_path / "cache.sqlite").exists()


def test_connection_refused_ends_in_request_failed(tmp_path):
    from codeio_dagster.llm.local_model import free_port

    llm = LLMResource.from_settings(
        LLMSettings(
            base_url=f"http://127.0.0.1:{free_port()}/v1",
            max_retries=2,
            backoff_base_s=0.01,
            cache_path=tmp_path / "c.sqlite",
        ),
        api_key="k",
    )
    outcomes, stats = llm.complete_many([req("nobody home")])
    assert outcomes[0].status == "request_failed"
    assert outcomes[0].attempts == 3
    assert "connection error" in outcomes[0].error
    assert stats.retries == 2


def test_resource_round_trips_every_setting(tmp_path):
    settings = LLMSettings(
        base_url="http://127.0.0.1:9/v1",
        max_concurrency=3,
        requests_per_minute=60,
        prices={"m": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}},
        cache_path=tmp_path / "c.sqlite",
        local_model={"cache_dir": str(tmp_path / "models"), "n_parallel": 2},
    )
    llm = LLMResource.from_settings(settings, api_key="sk-test-key-0002")
    assert llm.settings() == settings
    assert "api_key" not in llm.settings().model_dump()

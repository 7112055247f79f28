"""The LLM resources (remote and embedded) against a scripted OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from codeio_dagster.llm import (
    EMBEDDED_MODEL_ALIAS,
    ChatRequest,
    EmbeddedLLM,
    LLMResource,
    LLMSettings,
    LocalModelError,
    LocalModelServer,
    Price,
    RemoteLLM,
    SamplingParams,
    embedded_model_id,
    llm_from_settings,
)
from codeio_dagster.llm import local_model as local_model_module
from codeio_dagster.llm.limits import Clock
from codeio_dagster.llm.wire import Endpoint

MODEL = "scripted-model"


def make_resource(server, tmp_path: Path, clock: Clock | None = None, **overrides) -> LLMResource:
    settings = dict(
        base_url=server.base_url,
        max_concurrency=8,
        max_retries=5,
        # Far beyond any local reply, so attempt counts never depend on how busy the machine
        # is; the test of timeouts sets its own.
        timeout_s=60.0,
        backoff_base_s=0.01,
        backoff_max_s=5.0,
        cache_path=tmp_path / "cache.sqlite",
        prices={MODEL: Price(input_per_mtok=1.0, output_per_mtok=2.0)},
    )
    settings.update(overrides)
    llm = LLMResource.from_settings(LLMSettings(**settings), api_key="sk-test-key-0001")
    llm._clock = clock
    return llm


def serve_embedded_alias_from(monkeypatch, server) -> None:
    """Make the embedded-model path talk to `server` instead of starting llama.cpp."""

    def endpoint(self, settings):
        return Endpoint(server.base_url, "test-key", default_model=EMBEDDED_MODEL_ALIAS)

    monkeypatch.setattr(EmbeddedLLM, "_local_endpoint", endpoint)


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
    "length": [("length", "cut off mid")],
    "malformed": [("malformed",)],
    "always500": [("status", 500)],
    "r400": [("status", 400)],
}


def test_every_fault_ends_in_its_recorded_outcome(scripted_server, tmp_path, virtual_clock):
    scripted_server.script.update(FAULT_SCRIPT)
    llm = make_resource(scripted_server, tmp_path, clock=virtual_clock, max_retries=3)
    requests = [req(p) for p in FAULT_SCRIPT]
    outcomes, stats = llm.complete_many(requests)

    assert [o.key for o in outcomes] == list(FAULT_SCRIPT)
    got = {o.key: (o.status, o.content, o.attempts) for o in outcomes}
    assert got == {
        "ok": ("ok", "plain answer", 1),
        "r429": ("ok", "after 429", 2),
        "r500": ("ok", "after two 5xx", 3),
        "reset": ("ok", "after reset", 2),
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
    assert stats.retries == sum(o.attempts - 1 for o in outcomes) == 8
    assert stats.by_status == {"ok": 4, "truncated": 1, "request_failed": 3}
    assert (stats.cache_hits, stats.cache_misses) == (0, 8)
    # One wait before each retry: the 429's Retry-After (1 s), the rest jittered backoff
    # below base * 2**2 = 0.04 s for the third retry.
    waits = sorted(virtual_clock.sleeps)
    assert len(waits) == stats.retries
    assert waits[-1] == 1.0 and all(0 < w <= 0.04 for w in waits[:-1])
    assert stats.cost_usd == pytest.approx(
        sum(o.prompt_tokens * 1e-6 + o.completion_tokens * 2e-6 for o in outcomes)
    )
    assert stats.cost_usd > 0


def test_retry_after_is_honoured(scripted_server, tmp_path, virtual_clock):
    scripted_server.script["r429"] = [("status", 429, {"Retry-After": "2"}), ("ok", "fine")]
    scripted_server.script["r429ms"] = [("status", 429, {"Retry-After-Ms": "1500"}), ("ok", "ok")]
    llm = make_resource(scripted_server, tmp_path, clock=virtual_clock)
    outcomes, _ = llm.complete_many([req("r429"), req("r429ms")])
    assert [(o.status, o.attempts) for o in outcomes] == [("ok", 2), ("ok", 2)]
    # backoff_base_s is 0.01, so only the headers can ask for these waits.
    assert sorted(virtual_clock.sleeps) == [1.5, 2.0]


def test_retry_after_date_in_the_past_means_now(scripted_server, tmp_path, virtual_clock):
    scripted_server.script["r429date"] = [
        ("status", 429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        ("ok", "fine"),
    ]
    llm = make_resource(scripted_server, tmp_path, clock=virtual_clock)
    outcomes, _ = llm.complete_many([req("r429date")])
    assert (outcomes[0].status, outcomes[0].attempts) == ("ok", 2)
    # Not the jittered backoff (at least 0.005 s): the header was read, and it says "now".
    assert virtual_clock.sleeps == [0.0]


def test_retry_after_is_capped_by_backoff_max(scripted_server, tmp_path, virtual_clock):
    scripted_server.script["r429"] = [("status", 429, {"Retry-After": "3600"}), ("ok", "fine")]
    llm = make_resource(scripted_server, tmp_path, clock=virtual_clock, backoff_max_s=0.2)
    outcomes, _ = llm.complete_many([req("r429")])
    assert (outcomes[0].status, outcomes[0].attempts) == ("ok", 2)
    assert virtual_clock.sleeps == [0.2]


def test_a_hung_request_times_out_and_is_retried(scripted_server, tmp_path):
    scripted_server.script["hang once"] = [("hang",), ("ok", "after timeout")]
    scripted_server.script["stuck"] = [("hang",)]
    # The timeout is what is tested, so it is real; 5 s leaves the retry that has to succeed
    # ample time however busy the machine is.
    llm = make_resource(scripted_server, tmp_path, timeout_s=5.0, max_retries=1)
    outcomes, _ = llm.complete_many([req("hang once")])
    assert (outcomes[0].status, outcomes[0].content, outcomes[0].attempts) == (
        "ok",
        "after timeout",
        2,
    )
    assert len(scripted_server.times("hang once")) == 2

    # This server never answers, so even a short timeout cannot race a reply.
    stuck = make_resource(scripted_server, tmp_path, timeout_s=0.5, max_retries=0)
    outcomes, _ = stuck.complete_many([req("stuck")])
    assert (outcomes[0].status, outcomes[0].attempts) == ("request_failed", 1)
    assert outcomes[0].error == "timed out after 0.5s"


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


def test_requests_per_minute_limit(scripted_server, tmp_path, virtual_clock):
    # 240/min = 4 per second with a burst of one second's worth (4).
    llm = make_resource(
        scripted_server,
        tmp_path,
        clock=virtual_clock,
        requests_per_minute=240,
        max_concurrency=16,
    )
    outcomes, _ = llm.complete_many([req(f"q{i}") for i in range(10)])
    assert all(o.status == "ok" for o in outcomes)
    assert scripted_server.count() == 10
    # The burst goes at once; each of the other six waits the quarter second a token takes.
    assert virtual_clock.sleeps == pytest.approx([0.25] * 6)


def test_tokens_per_minute_limit(scripted_server, tmp_path, virtual_clock):
    # 2,400 tokens/min is 40/s with a burst of 40. Each request reserves 36 tokens (its
    # max_tokens 32 plus 4 for the message) and gets back what the reply did not use (the
    # server reports 3), so the third request is 2 tokens short: a 0.05 s wait. Without the
    # give-back, the second and third would wait 0.8 s and 0.9 s. One at a time, so each
    # reply is accounted before the next request reserves.
    llm = make_resource(
        scripted_server, tmp_path, clock=virtual_clock, tokens_per_minute=2400, max_concurrency=1
    )
    outcomes, _ = llm.complete_many([req(f"t{i}") for i in range(3)])
    assert all(o.status == "ok" for o in outcomes)
    assert [o.prompt_tokens + o.completion_tokens for o in outcomes] == [3, 3, 3]
    assert virtual_clock.sleeps == pytest.approx([0.05])


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
    # The client masks the exact key it was given, not a pattern, so any distinctive value
    # proves it; this one is plainly fake.
    secret = "fake-key-for-redaction-test-0001"
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
        repr(llm.settings),
    ]
    for text in shown:
        assert secret not in text
    assert "***" in outcomes[0].error

    monkeypatch.delenv("CODEIO_TEST_MISSING_KEY", raising=False)
    keyless = RemoteLLM(
        settings=LLMSettings(
            base_url=scripted_server.base_url, api_key_env="CODEIO_TEST_MISSING_KEY"
        )
    )
    with pytest.raises(ValueError, match="set the environment variable CODEIO_TEST_MISSING_KEY"):
        keyless.complete_many([req("x")])

    monkeypatch.setenv("CODEIO_TEST_KEY", secret)
    from_env = RemoteLLM(
        settings=LLMSettings(
            base_url=scripted_server.base_url,
            api_key_env="CODEIO_TEST_KEY",
            cache_path=tmp_path / "c2.sqlite",
        ),
        api_key=dg.EnvVar("CODEIO_TEST_KEY"),
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
    requests = [
        ChatRequest(
            key=f"k{i}",
            messages=[{"role": "user", "content": f"cached {i}"}],
            params=SamplingParams(max_tokens=8),
        )
        for i in range(3)
    ]
    # Fill the cache through the embedded-model path, answered by the scripted server.
    with monkeypatch.context() as m:
        serve_embedded_alias_from(m, scripted_server)
        LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite")).complete_many(
            requests
        )
    assert scripted_server.count() == 3

    def tripwire(self):
        raise AssertionError("the embedded model must not start for a fully cached run")

    monkeypatch.setattr(LocalModelServer, "start", tripwire)
    local = LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite"))
    # params.model naming the alias is the same request as leaving it null.
    named = [
        r.model_copy(update={"params": SamplingParams(model=EMBEDDED_MODEL_ALIAS, max_tokens=8)})
        for r in requests
    ]
    outcomes, stats = local.complete_many(requests[:2] + named[2:])
    assert all(o.cached for o in outcomes)
    assert stats.cache_hits == 3
    assert local.local_server is None


def test_embedded_model_cache_key_follows_the_pinned_weights(
    scripted_server, tmp_path, monkeypatch
):
    serve_embedded_alias_from(monkeypatch, scripted_server)
    request = ChatRequest(
        key="k", messages=[{"role": "user", "content": "hi"}], params=SamplingParams(max_tokens=8)
    )
    local = LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite"))
    (first,), _ = local.complete_many([request])
    pinned = f"{EMBEDDED_MODEL_ALIAS}@{local_model_module.MODEL_SHA256[:12]}"
    assert first.model == embedded_model_id() == pinned
    # The server is still asked for the alias it serves the weights under.
    assert scripted_server.arrivals[0].body["model"] == EMBEDDED_MODEL_ALIAS
    (again,), _ = local.complete_many([request])
    assert again.cached and again.request_hash == first.request_hash

    # New pinned weights: the old replies are not theirs, so the request is sent again.
    monkeypatch.setattr(local_model_module, "MODEL_SHA256", "0123456789ab" + "0" * 52)
    (repinned,), stats = local.complete_many([request])
    assert not repinned.cached and stats.cache_misses == 1
    assert repinned.request_hash != first.request_hash
    assert repinned.model == f"{EMBEDDED_MODEL_ALIAS}@0123456789ab"
    assert scripted_server.count() == 2

    # A remote endpoint serving some model under the alias's name shares no cache entries.
    remote = make_resource(scripted_server, tmp_path)
    named = request.model_copy(
        update={"params": SamplingParams(model=EMBEDDED_MODEL_ALIAS, max_tokens=8)}
    )
    (elsewhere,), _ = remote.complete_many([named])
    assert not elsewhere.cached and elsewhere.model == EMBEDDED_MODEL_ALIAS
    assert scripted_server.count() == 3


def test_progress_is_closed_when_the_embedded_model_fails_to_start(tmp_path, monkeypatch):
    import codeio_dagster.llm.client as client

    closed = []

    class RecordingProgress(client.Progress):
        def close(self):
            closed.append(self.label)
            super().close()

    def refuse(self):
        raise LocalModelError("model weight packages not installed")

    monkeypatch.setattr(client, "Progress", RecordingProgress)
    monkeypatch.setattr(LocalModelServer, "start", refuse)
    local = LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite"))
    request = ChatRequest(key="k", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(LocalModelError, match="not installed"):
        local.complete_many([request], progress="answers")
    assert closed == ["answers"]


def test_progress_is_logged_as_lines(scripted_server, tmp_path):
    lines = []

    class Log:
        def info(self, message):
            lines.append(message)

        warning = error = info

    llm = make_resource(scripted_server, tmp_path)
    llm.complete_many([req("a")], progress="answers", log=Log())
    llm.complete_many([req("a"), req("b")], progress="answers", log=Log())
    progress = [line for line in lines if line.startswith("answers: ")]
    assert progress == [
        "answers: 1 of 1 requests to do",
        progress[1],
        "answers: 1 of 2 requests to do (1 already done)",
        progress[3],
    ]
    assert progress[1].startswith("answers: 1/1 requests (100%), ")
    assert progress[3].startswith("answers: 2/2 requests (100%), ")


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
    assert llm.settings is settings  # the section itself, not a copy rebuilt field by field
    assert "api_key" not in llm.settings.model_dump()


def test_the_factory_picks_the_implementation_from_base_url(tmp_path, monkeypatch):
    remote_settings = LLMSettings(base_url="http://127.0.0.1:9/v1", cache_path=tmp_path / "c")
    remote = LLMResource.from_settings(remote_settings, api_key="sk-test-key-0003")
    assert type(remote) is RemoteLLM and remote.settings.base_url == "http://127.0.0.1:9/v1"
    assert type(llm_from_settings(remote_settings)) is RemoteLLM

    embedded_settings = LLMSettings(
        cache_path=tmp_path / "c", local_model={"n_parallel": 2, "cache_dir": str(tmp_path)}
    )
    # The embedded server takes no key: one passed along (build_resources does) is dropped.
    embedded = LLMResource.from_settings(embedded_settings, api_key="sk-test-key-0003")
    assert type(embedded) is EmbeddedLLM
    assert "sk-test-key-0003" not in repr(embedded)
    assert embedded.settings == embedded_settings
    assert embedded.local_server is None  # started lazily, not at construction

    # Asked of an implementation, the factory refuses settings that select the other one.
    assert type(RemoteLLM.from_settings(remote_settings)) is RemoteLLM
    with pytest.raises(TypeError, match="select EmbeddedLLM"):
        RemoteLLM.from_settings(embedded_settings)
    with pytest.raises(NotImplementedError, match="does not implement _backend"):
        LLMResource(settings=LLMSettings(cache_path=tmp_path / "c")).complete_many([req("x")])
    # An implementation refuses settings meant for the other one, naming the field.
    with pytest.raises(ValueError, match="RemoteLLM needs settings.base_url"):
        RemoteLLM(settings=embedded_settings)
    with pytest.raises(ValueError, match="EmbeddedLLM serves the local model"):
        EmbeddedLLM(settings=remote_settings)


def test_assets_asking_for_the_interface_get_the_configured_implementation(
    scripted_server, tmp_path
):
    seen = {}

    @dg.asset
    def answer(llm: LLMResource) -> None:
        seen["type"] = type(llm)
        (seen["outcome"],), _ = llm.complete_many([req("through dagster")])

    remote = make_resource(scripted_server, tmp_path)
    assert dg.materialize([answer], resources={"llm": remote}).success
    assert seen["type"] is RemoteLLM
    assert (seen["outcome"].status, seen["outcome"].content) == ("ok", "echo: through dagster")


def test_embedded_server_starts_on_first_miss_and_stops_at_teardown(
    scripted_server, tmp_path, monkeypatch
):
    """The lifecycle without llama.cpp: a stand-in server that the scripted endpoint answers."""
    events = []
    port = int(scripted_server.base_url.rsplit(":", 1)[1].split("/")[0])

    def start(self):
        events.append("start")
        self._server, self._port = object(), port
        return self

    def stop(self):
        events.append("stop")
        self._server, self._port = None, None

    monkeypatch.setattr(LocalModelServer, "start", start)
    monkeypatch.setattr(LocalModelServer, "stop", stop)
    seen = {}

    @dg.asset
    def answer(llm: LLMResource) -> None:
        assert events == []  # nothing starts before a request misses the cache
        outcomes, _ = llm.complete_many([req("a"), req("b")])
        outcomes += llm.complete_many([req("c")])[0]
        seen["statuses"] = [o.status for o in outcomes]
        seen["events"] = list(events)

    embedded = LLMResource.from_settings(LLMSettings(cache_path=tmp_path / "cache.sqlite"))
    assert dg.materialize([answer], resources={"llm": embedded}).success
    assert seen == {"statuses": ["ok", "ok", "ok"], "events": ["start"]}
    assert events == ["start", "stop"]


def test_the_ca_bundle_is_read_once_per_process_not_per_stage(
    scripted_server, tmp_path, monkeypatch
):
    import ssl

    from codeio_dagster.llm import wire

    loads = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self, *args, **kwargs):
        loads.append([*args, *kwargs.values()])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    monkeypatch.setattr(wire, "_SSL_CONTEXTS", {}, raising=False)
    llm = make_resource(scripted_server, tmp_path, use_cache=False)
    for stage in ("refactor", "prediction", "revision"):  # a client each, as the stages make
        outcomes, _ = llm.complete_many([req(f"{stage} prompt")])
        assert outcomes[0].status == "ok"
    assert len(loads) == 1
    # Another CA setting gets a context of its own, made from it.
    first = wire.shared_ssl_context()
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert wire.shared_ssl_context() is not first
    assert certifi.where() in loads[-1]

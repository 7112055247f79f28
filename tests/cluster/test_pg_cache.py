"""The LLM request cache in a real PostgreSQL server: the SQLite cache's guarantees, shared."""

from __future__ import annotations

import threading

import pytest

from codeio_dagster.cluster.local import postgres
from codeio_dagster.llm import ChatRequest, LLMSettings, SamplingParams
from codeio_dagster.llm.cache import PostgresResponseCache, ResponseCache, open_cache
from codeio_dagster.llm.resource import RemoteLLM

REC = dict(
    request_hash="h1",
    model="m",
    status="ok",
    content="a",
    finish_reason="stop",
    prompt_tokens=1,
    completion_tokens=2,
    cost_usd=0.5,
)


@pytest.fixture(scope="module")
def pg_server():
    with postgres() as server:
        yield server


@pytest.fixture
def pg(pg_server, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    with PostgresResponseCache(pg_server.dsn()) as cache, cache._db.cursor() as cur:
        cur.execute("TRUNCATE codeio_llm_responses")
    return pg_server


@pytest.fixture(params=["sqlite", "postgresql"])
def open_two(request, tmp_path):
    """Two independent connections to one cache of each kind."""
    if request.param == "sqlite":
        return lambda: ResponseCache(tmp_path / "c.sqlite")
    server = request.getfixturevalue("pg")
    return lambda: PostgresResponseCache(server.dsn())


def test_first_writer_wins(open_two):
    with open_two() as c1, open_two() as c2:
        c1.put(REC)
        c2.put({**REC, "content": "b"})
        assert c2.get_many(["h1", "h2"]) == {"h1": REC}
        assert len(c1) == 1


def test_concurrent_writers_store_one_reply_that_every_reader_sees(pg):
    """Eight connections race to store eight different replies under one key."""
    caches = [PostgresResponseCache(pg.dsn()) for _ in range(8)]
    barrier = threading.Barrier(8)

    def put(i):
        barrier.wait()
        caches[i].put({**REC, "content": f"reply {i}"})

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = {c.get_many(["h1"])["h1"]["content"] for c in caches}
    assert len(seen) == 1 and len(caches[0]) == 1
    for c in caches:
        c.close()


def test_restart_loses_nothing(pg):
    with PostgresResponseCache(pg.dsn()) as cache:
        cache.put(REC)
    pg.restart()
    with PostgresResponseCache(pg.dsn()) as cache:
        assert cache.get_many(["h1"]) == {"h1": REC}


def test_settings_select_the_backend_and_keep_the_password_out(tmp_path, pg):
    assert isinstance(open_cache(LLMSettings(cache_path=tmp_path / "x.sqlite")), ResponseCache)
    assert open_cache(LLMSettings(use_cache=False)) is None
    with open_cache(LLMSettings(cache_url=pg.dsn())) as cache:
        assert isinstance(cache, PostgresResponseCache)
    with pytest.raises(ValueError, match="must not hold a password; set PGPASSWORD") as err:
        LLMSettings(cache_url=f"postgresql://postgres:{pg.password}@127.0.0.1:{pg.port}/codeio")
    assert pg.password not in str(err.value)
    with pytest.raises(ValueError, match="must be a PostgreSQL URL"):
        LLMSettings(cache_url="mysql://h/db")


def test_wrong_password_is_a_clear_error_without_the_secret(pg, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(ConnectionError, match=r"cannot connect to postgresql://postgres@") as err:
        PostgresResponseCache(pg.dsn())
    assert "not-the-password" not in str(err.value)


def test_a_rerun_on_another_machine_repeats_no_successful_call(pg, tmp_path):
    """Two resources with separate local folders share the PostgreSQL cache; the second sends
    nothing that the first completed, and only what failed is sent again."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    sent: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            sent.append(prompt)
            if prompt == "fail" and sent.count("fail") == 1:
                self.send_response(400)  # a non-retryable failure: never cached
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            data = json.dumps(
                {
                    "choices": [{"message": {"content": f"re: {prompt}"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params = SamplingParams(model="stub", max_tokens=8)
        requests = [
            ChatRequest(key=p, messages=[{"role": "user", "content": p}], params=params)
            for p in ["a", "b", "fail"]
        ]

        def run(folder):
            settings = LLMSettings(
                base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                cache_url=pg.dsn(),
                cache_path=tmp_path / folder / "unused.sqlite",
                max_retries=0,
            )
            with RemoteLLM.from_settings(settings, api_key="k") as llm:
                outcomes, _ = llm.complete_many(requests)
            return {o.key: o.status for o in outcomes}

        assert run("one") == {"a": "ok", "b": "ok", "fail": "request_failed"}
        assert sorted(sent) == ["a", "b", "fail"]
        assert run("two") == {"a": "ok", "b": "ok", "fail": "ok"}
        assert sorted(sent) == ["a", "b", "fail", "fail"]
        assert run("three") == {"a": "ok", "b": "ok", "fail": "ok"}
        assert len(sent) == 4
        assert not (tmp_path / "one" / "unused.sqlite").exists()
    finally:
        server.shutdown()
        server.server_close()

"""Sandbox result cache: a key for everything that decides a reply, and where the store lives."""

from __future__ import annotations

from codeio_dagster.sandbox import Executor
from codeio_dagster.sandbox.cache import SqliteResultCache, open_result_cache, result_key
from codeio_dagster.storage import location
from tests.sandbox.workers import job as call_job
from tests.sandbox.workers import kill_light_worker_soon

IDENTITY = {"server": "s", "runtime": "r", "mode": "nsjail", "jail": {"memory_mb": 1024}}
REQUEST = {"id": "a", "kind": "call", "code": "def f(): 1", "input": {"x": 1}, "cpu_s": 6}


def test_the_key_covers_each_determinant_and_ignores_the_request_id():
    base = result_key(IDENTITY, 0, False, REQUEST)
    assert result_key(IDENTITY, 0, False, {**REQUEST, "id": "b"}) == base
    variants = [
        result_key(IDENTITY, 1, False, REQUEST),
        result_key(IDENTITY, 0, True, REQUEST),
        result_key({**IDENTITY, "runtime": "r2"}, 0, False, REQUEST),
        result_key({**IDENTITY, "jail": {"memory_mb": 512}}, 0, False, REQUEST),
        result_key(IDENTITY, 0, False, {**REQUEST, "code": "def f(): 2"}),
        result_key(IDENTITY, 0, False, {**REQUEST, "input": {"x": 2}}),
        result_key(IDENTITY, 0, False, {**REQUEST, "cpu_s": 7}),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_first_writer_wins_and_replies_survive_reopening(tmp_path):
    path = tmp_path / "c.sqlite"
    with SqliteResultCache(path) as cache:
        cache.put_many({"k": {"status": "ok", "output": "1"}})
        cache.put_many({"k": {"status": "ok", "output": "2"}})
    with SqliteResultCache(path) as cache:
        assert cache.get_many(["k", "missing"]) == {"k": {"status": "ok", "output": "1"}}


def test_the_store_is_local_even_when_data_dir_is_object_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEIO_CACHE_DIR", str(tmp_path / "machine"))
    with open_result_cache(location("s3://bucket/prefix")) as cache:
        assert cache.path == tmp_path / "machine" / "sandbox_results.sqlite"
    with open_result_cache(tmp_path / "data") as cache:
        assert cache.path == tmp_path / "data" / "cache" / "sandbox_results.sqlite"


def test_a_reply_the_host_made_up_is_never_cached(sandbox_settings, tmp_path):
    settings = sandbox_settings.model_copy(update={"workers": 1})
    job = call_job("victim", "    import time\n    time.sleep(2)\n    return 'slept'")
    with Executor(settings) as ex, SqliteResultCache(tmp_path / "c.sqlite") as cache:
        kill_light_worker_soon(ex, settings)
        (victim,) = ex.run([job], cache=cache)
        assert victim.status == "killed" and "died" in victim.error
        before = ex.requests_run
        (again,) = ex.run([job], cache=cache)  # not answered by the made-up reply: run again
        assert again.status == "ok" and ex.requests_run == before + 1
        (third,) = ex.run([job], cache=cache)  # the real reply was stored
        assert third == again and ex.requests_run == before + 1

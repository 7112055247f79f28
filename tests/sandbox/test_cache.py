"""Sandbox result cache: a key for everything that decides a reply, and where the store lives."""

from __future__ import annotations

import pytest

from codeio_dagster.sandbox import Executor
from codeio_dagster.sandbox.cache import (
    SqliteResultCache,
    hit_a_limit,
    open_result_cache,
    result_key,
)
from codeio_dagster.storage import location
from tests.sandbox.workers import job as call_job
from tests.sandbox.workers import kill_light_worker_soon

IDENTITY = {"server": "s", "runtime": "r", "mode": "nsjail", "jail": {"memory_mb": 1024}}
LIGHT = ["json", "math"]
REQUEST = {"id": "a", "kind": "call", "code": "def f(): 1", "input": {"x": 1}, "cpu_s": 6}


def test_the_key_covers_each_determinant_and_ignores_the_request_id():
    base = result_key(IDENTITY, 0, LIGHT, REQUEST)
    assert result_key(IDENTITY, 0, LIGHT, {**REQUEST, "id": "b"}) == base
    variants = [
        result_key(IDENTITY, 1, LIGHT, REQUEST),
        result_key(IDENTITY, 0, [*LIGHT, "numpy"], REQUEST),
        result_key(IDENTITY, 0, [*LIGHT, "numpy", "pandas"], REQUEST),
        result_key({**IDENTITY, "runtime": "r2"}, 0, LIGHT, REQUEST),
        result_key({**IDENTITY, "jail": {"memory_mb": 512}}, 0, LIGHT, REQUEST),
        result_key(IDENTITY, 0, LIGHT, {**REQUEST, "code": "def f(): 2"}),
        result_key(IDENTITY, 0, LIGHT, {**REQUEST, "input": {"x": 2}}),
        result_key(IDENTITY, 0, LIGHT, {**REQUEST, "cpu_s": 7}),
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


def test_a_reply_decided_by_a_limit_is_served_only_once_a_second_run_agrees(tmp_path):
    with SqliteResultCache(tmp_path / "c.sqlite") as cache:
        cache.put_many({"slow": {"status": "timeout", "error": "first"}})
        assert cache.get_many(["slow"]) == {}  # load may have decided it: run it again
        cache.put_many({"slow": {"status": "timeout", "error": "second"}})
        assert cache.get_many(["slow"]) == {"slow": {"status": "timeout", "error": "second"}}
        cache.put_many({"slow": {"status": "ok", "output": "1"}})  # settled: stays
        assert cache.get_many(["slow"])["slow"]["status"] == "timeout"
        cache.put_many({"oom": {"status": "memory"}})
        cache.put_many({"oom": {"status": "ok", "output": "2"}})  # within the limits this time
        assert cache.get_many(["oom"]) == {"oom": {"status": "ok", "output": "2"}}


@pytest.mark.parametrize(
    ("reply", "limited"),
    [
        ({"status": "ok", "output": "1"}, False),
        ({"status": "exception", "error": "KeyError"}, False),
        ({"status": "timeout"}, True),
        ({"status": "memory"}, True),
        ({"status": "ok", "pairs": [], "counts": {"dropped_timeout": 0}}, False),
        ({"status": "ok", "pairs": [], "counts": {"dropped_timeout": 3}}, True),
        ({"status": "ok", "pairs": [], "counts": {"dropped_memory": 1}}, True),
        ({"status": "ok", "pairs": [["{}", "1"]], "stopped_by_wall_clock": True}, True),
        ({"status": "ok", "results": [{"status": "ok"}, {"status": "timeout"}]}, True),
        ({"status": "ok", "results": [{"status": "ok"}, {"status": "exception"}]}, False),
    ],
)
def test_which_replies_a_limit_decided(reply, limited):
    assert hit_a_limit(reply) is limited


def test_a_timed_out_job_runs_again_on_the_next_run_then_comes_from_the_cache(
    sandbox_settings, tmp_path
):
    job = call_job("spin", "    while True: pass", timeout_s=0.5)
    with Executor(sandbox_settings) as ex, SqliteResultCache(tmp_path / "c.sqlite") as cache:
        ran = []
        for _ in range(3):
            before = ex.requests_run
            (result,) = ex.run([job], cache=cache)
            assert result.status == "timeout"
            ran.append(ex.requests_run - before)
    assert ran == [1, 1, 0]

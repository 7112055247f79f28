"""Each heavy job forks from a template that preloaded the heavy modules its code names, and no
others, under either hash seed.

A seed is fixed when the jail's Python starts, so the determinism re-run needs jails of its
own; what no job pays is scipy, pandas, sympy and networkx because another job of the shard
named them: each set of modules has pools of its own. Counted here from the jails' preload
lists and from what a job finds already loaded.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from codeio_dagster.sandbox import Executor, FunctionSpec, IOPairLimits, Job, generate_io_pairs
from codeio_dagster.sandbox.cache import SqliteResultCache
from codeio_dagster.sandbox.runtime import runtime_path, runtime_python

GEN = "\n\ndef input_generator():\n    return {'n': random.randint(0, 1000)}\n"
# Names built at run time, so that the code names no heavy module but the one it imports.
HEAVY_NAMES = ["networkx", "pandas", "scipy", "sympy"]
OTHERS = "[p + q for p, q in (('sci', 'py'), ('pan', 'das'), ('sym', 'py'), ('network', 'x'))]"
LOADED = f"sorted(m for m in {OTHERS} if m in sys.modules)"

NUMPY_ONLY = (
    "import random, sys\nimport numpy\n"
    f"LOADED = {LOADED}\n\n"
    "def main_solution(n):\n    return [int(numpy.int64(n) * 2), LOADED]\n" + GEN
)
SCIPY = (
    "import random, sys\nPRELOADED = 'scipy.stats' in sys.modules\nimport scipy.special\n"
    f"LOADED = {LOADED}\n\n"
    "def main_solution(n):\n    return [float(scipy.special.gamma(3)), PRELOADED, LOADED]\n" + GEN
)
PANDAS = (
    "import random, sys\nimport pandas\n"
    f"LOADED = {LOADED}\n\n"
    "def main_solution(n):\n    return [int(pandas.Series([n]).sum()), LOADED]\n" + GEN
)
LIGHT = "import random\n\ndef main_solution(n):\n    return n + 1\n" + GEN
LIMITS = IOPairLimits(max_pairs=3, time_budget_s=2, max_generator_calls=30)


def _loaded_job(id_: str, imports: str) -> Job:
    """A call returning which heavy modules other than numpy it found loaded."""
    code = f"import sys\n{imports}\n\ndef f():\n    return {LOADED}\n"
    return Job(id=id_, code=code, call="f")


NUMPY_CALL = _loaded_job("np", "import numpy")
SCIPY_CALL = _loaded_job("sp", "import scipy.special")


def _pool(ex: Executor, key) -> set[str]:
    """Top-level modules of every preload list pool `key`'s jails started with."""
    return {e.split(".")[0] for k, preload in ex.jail_preloads if k == key for e in preload}


@pytest.fixture(scope="module")
def mixed(sandbox_settings):
    """One shard mixing light, numpy-only, scipy and pandas functions; then the numpy one alone."""
    with Executor(sandbox_settings) as ex:
        functions = [
            FunctionSpec(id="light", code=LIGHT),
            FunctionSpec(id="np", code=NUMPY_ONLY),
            FunctionSpec(id="sp", code=SCIPY),
            FunctionSpec(id="pd", code=PANDAS),
        ]
        outcomes = {o.function_id: o for o in generate_io_pairs(ex, functions, LIMITS)}
        starts = dict(ex.jail_starts)
        preloads = {key: _pool(ex, key) for key in starts}
        (again,) = ex.run([NUMPY_CALL])
        yield {
            "outcomes": outcomes,
            "starts": starts,
            "preloads": preloads,
            "again": again,
            "starts_after": dict(ex.jail_starts),
        }


def test_a_numpy_job_finds_only_numpy_loaded_beside_scipy_and_pandas_jobs(mixed):
    outcomes = mixed["outcomes"]
    for fid in ("light", "np", "sp", "pd"):
        assert outcomes[fid].status == "ok", outcomes[fid].error  # the re-run agreed too
    assert all(json.loads(p.output)[1] == [] for p in outcomes["np"].pairs)
    assert all(json.loads(p.output)[1:] == [True, ["scipy"]] for p in outcomes["sp"].pairs)
    assert all(json.loads(p.output)[1] == ["pandas"] for p in outcomes["pd"].pairs)


def test_each_module_set_has_its_own_heavy_jails_under_both_seeds(mixed):
    heavy = {key: n for key, n in mixed["starts"].items() if key[1]}
    sets = [frozenset({"numpy"}), frozenset({"scipy"}), frozenset({"pandas"})]
    # One jail each: a pool's share of the batch is under a slot's, and its re-run under 1 s.
    assert heavy == {(seed, s): 1 for seed in (0, 1) for s in sets}
    for key in heavy:
        others = mixed["preloads"][key] & {"numpy", *HEAVY_NAMES}
        assert others == set(key[1])


def test_a_warm_jail_of_the_jobs_own_set_is_kept(mixed):
    assert mixed["again"].status == "ok" and json.loads(mixed["again"].output) == []
    assert mixed["starts_after"] == mixed["starts"]


def test_a_cached_reply_is_the_one_a_fresh_run_gives(sandbox_settings, tmp_path):
    settings = sandbox_settings.model_copy(update={"workers": 1})
    with SqliteResultCache(tmp_path / "c.sqlite") as cache:
        with Executor(settings) as ex:
            beside_scipy, _ = ex.run([NUMPY_CALL, SCIPY_CALL], cache=cache)
        with Executor(settings) as ex:
            (fresh,) = ex.run([NUMPY_CALL])
            ran = ex.requests_run
            (cached,) = ex.run([NUMPY_CALL], cache=cache)
            assert ex.requests_run == ran  # served from the cache
    assert beside_scipy.output == fresh.output == cached.output == "[]"


def test_replies_of_different_templates_are_cached_apart(sandbox_settings, tmp_path):
    named = sandbox_settings.model_copy(update={"workers": 1})
    every = named.model_copy(update={"heavy_preload_scope": "all"})
    with SqliteResultCache(tmp_path / "c.sqlite") as cache:
        with Executor(named) as ex:
            (alone,) = ex.run([NUMPY_CALL], cache=cache)
        with Executor(every) as ex:
            (beside_all,) = ex.run([NUMPY_CALL], cache=cache)
    assert json.loads(alone.output) == []
    assert json.loads(beside_all.output) == HEAVY_NAMES


def test_idle_jails_past_four_per_slot_stop_least_recently_used_first(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 1})
    light = Job(id="l", code="def f():\n    return 1", call="f")
    heavy = [
        _loaded_job("np", "import numpy"),
        _loaded_job("pd", "import pandas"),
        _loaded_job("sy", "import sympy"),
        _loaded_job("pdsy", "import pandas, sympy"),
    ]
    seed = settings.hash_seed
    with Executor(settings) as ex:
        results = [ex.run([job])[0] for job in [light, *heavy]]
        running = {w.key for w in ex.workers() if w.proc is not None}
        (light_again,) = ex.run([light])
        light_starts = ex.jail_starts[(seed, frozenset())]
    assert [r.status for r in results] == ["ok"] * 5
    assert [json.loads(r.output) for r in results[1:]] == [
        [],
        ["pandas"],
        ["sympy"],
        ["pandas", "sympy"],
    ]
    # Five pools for one slot: the light jail, used longest ago, stopped for the fifth.
    assert len(running) == 4 and (seed, frozenset()) not in running
    assert light_again.output == "1" and light_starts == 2


def test_scope_all_preloads_every_entry_as_before(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 1, "heavy_preload_scope": "all"})
    with Executor(settings) as ex:
        (out,) = generate_io_pairs(ex, [FunctionSpec(id="np", code=NUMPY_ONLY)], LIMITS)
        starts = [(k, set(p)) for k, p in ex.jail_preloads if k[1]]
    assert out.status == "ok"
    assert starts and all(set(settings.heavy_preload) <= preload for _, preload in starts)
    assert json.loads(out.pairs[0].output)[1] == HEAVY_NAMES


def test_a_slot_takes_the_warm_jail_another_slot_left_instead_of_starting_one(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 2})
    numpy_job = Job(id="h", code="import numpy\ndef f():\n    return int(numpy.int64(3))", call="f")
    with Executor(settings) as ex:
        ex.run([numpy_job])  # slot 0 starts the first heavy jail
        # Slot 0 takes the light job, slot 1 the heavy one: the heavy jail is warm and free.
        light = Job(id="l", code="import time\ndef f():\n    time.sleep(1)\n    return 1", call="f")
        results = ex.run([light, numpy_job.model_copy(update={"id": "h2"})])
        heavy_starts = ex.jail_starts[(settings.hash_seed, frozenset({"numpy"}))]
    assert [r.output for r in results] == ["1", "3"]
    assert heavy_starts == 1


def test_a_re_run_with_little_heavy_work_starts_one_heavy_jail(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 2})
    functions = [
        FunctionSpec(id=f"np{i}", code=NUMPY_ONLY.replace("* 2", f"* {i + 2}")) for i in range(2)
    ]
    numpy = frozenset({"numpy"})
    with Executor(settings) as ex:
        outcomes = generate_io_pairs(ex, functions, LIMITS)
        starts = dict(ex.jail_starts)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert starts[(settings.hash_seed, numpy)] == 2  # the generation used both slots
    assert starts[(settings.hash_seed + 1, numpy)] == 1  # the quick re-run, one jail


def test_a_few_heavy_functions_among_many_generate_in_one_heavy_jail(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 2})
    heavy = [
        FunctionSpec(id=f"np{i}", code=NUMPY_ONLY.replace("* 2", f"* {i + 2}")) for i in range(2)
    ]
    light = [
        FunctionSpec(id=f"py{i}", code=LIGHT.replace("n + 1", f"n + {i + 1}")) for i in range(3)
    ]
    with Executor(settings) as ex:
        outcomes = generate_io_pairs(ex, heavy + light, LIMITS)
        starts = dict(ex.jail_starts)
    assert [o.status for o in outcomes] == ["ok"] * 5
    # Two heavy functions of five: less than one slot's share, so one heavy jail generates.
    assert starts[(settings.hash_seed, frozenset({"numpy"}))] == 1


def test_the_runtime_holds_the_bytecode_of_every_module_it_installed(sandbox_settings):
    # The jail cannot write bytecode to the read-only runtime: a module without it is compiled
    # from source at every import, in every jail start and in every job that imports it.
    runtime = runtime_path(sandbox_settings)
    tag = subprocess.run(
        [str(runtime_python(runtime)), "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sources = list(runtime.glob("lib/python3*/site-packages/**/*.py"))
    missing = [
        str(py.relative_to(runtime))
        for py in sources
        if not (py.parent / "__pycache__" / f"{py.stem}.{tag}.pyc").is_file()
    ]
    assert len(sources) > 1000 and "scipy" in {p.parts[-2] for p in sources}
    assert missing == [], f"{len(missing)} of {len(sources)} without bytecode, e.g. {missing[:3]}"

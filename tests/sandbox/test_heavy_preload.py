"""Heavy jails preload only the heavy modules their jobs name, under either hash seed.

A seed is fixed when the jail's Python starts, so the determinism re-run needs jails of its
own; what it need not pay is scipy, pandas, sympy and networkx for a shard that imports only
numpy. Counted here from the jails' preload lists and from what a job finds already loaded.
"""

from __future__ import annotations

import json

import pytest

from codeio_dagster.sandbox import Executor, FunctionSpec, IOPairLimits, Job, generate_io_pairs

GEN = "\n\ndef input_generator():\n    return {'n': random.randint(0, 1000)}\n"
# Names built at run time, so that the code names no heavy module but the one it imports.
OTHERS = "[p + q for p, q in (('sci', 'py'), ('pan', 'das'), ('sym', 'py'), ('network', 'x'))]"

NUMPY_ONLY = (
    "import random, sys\nimport numpy\n"
    f"LOADED = sorted(m for m in {OTHERS} if m in sys.modules)\n\n"
    "def main_solution(n):\n    return [int(numpy.int64(n) * 2), LOADED]\n" + GEN
)
SCIPY = (
    "import random, sys\nPRELOADED = 'scipy.stats' in sys.modules\nimport scipy.special\n\n"
    "def main_solution(n):\n    return [float(scipy.special.gamma(3)), PRELOADED]\n" + GEN
)
LIGHT = "import random\n\ndef main_solution(n):\n    return n + 1\n" + GEN
LIMITS = IOPairLimits(max_pairs=3, time_budget_s=2, max_generator_calls=30)
HEAVY_NAMES = {"scipy", "pandas", "sympy", "networkx"}


def _starts(ex: Executor, lo: int, hi: int) -> list[tuple[tuple[int, bool], set[str], tuple]]:
    """Jail starts lo..hi: (pool key, top-level modules preloaded, preload list)."""
    return [
        (key, {entry.split(".")[0] for entry in preload}, preload)
        for key, preload in ex.jail_preloads[lo:hi]
    ]


@pytest.fixture(scope="module")
def named(sandbox_settings):
    with Executor(sandbox_settings) as ex:
        functions = [FunctionSpec(id="light", code=LIGHT), FunctionSpec(id="np", code=NUMPY_ONLY)]
        first = generate_io_pairs(ex, functions, LIMITS)
        after_first = len(ex.jail_preloads)
        light_starts = {k: n for k, n in ex.jail_starts.items() if not k[1]}
        second = generate_io_pairs(ex, [FunctionSpec(id="sp", code=SCIPY)], LIMITS)
        after_second = len(ex.jail_preloads)
        light_after = {k: n for k, n in ex.jail_starts.items() if not k[1]}
        third = generate_io_pairs(ex, [FunctionSpec(id="np", code=NUMPY_ONLY)], LIMITS, seed=1)
        yield {
            "outcomes": {o.function_id: o for o in first + second},
            "third": third,
            "first": _starts(ex, 0, after_first),
            "second": _starts(ex, after_first, after_second),
            "after_second": after_second,
            "total": len(ex.jail_preloads),
            "light": (light_starts, light_after),
        }


def test_a_numpy_shard_starts_heavy_jails_of_both_seeds_with_numpy_alone(named):
    heavy = [(key, modules) for key, modules, _ in named["first"] if key[1]]
    assert {key[0] for key, _ in heavy} == {0, 1}  # the generation's jails and the re-run's
    for _, modules in heavy:
        assert "numpy" in modules and not modules & HEAVY_NAMES
    out = named["outcomes"]["np"]
    assert out.status == "ok", out.error  # the re-run under the other seed agreed
    for pair in out.pairs:
        assert json.loads(pair.output)[1] == []  # nothing heavier was loaded for it


def test_a_job_naming_another_module_restarts_the_heavy_jails_with_it(named):
    later = named["second"]
    assert later and all(key[1] for key, _, _ in later)  # the light jails stayed warm
    assert {key[0] for key, _, _ in later} == {0, 1}
    for _, modules, preload in later:
        assert {"numpy", "scipy"} <= modules and "scipy.stats" in preload
        assert not modules & {"pandas", "sympy", "networkx"}
    out = named["outcomes"]["sp"]
    assert out.status == "ok", out.error
    assert all(json.loads(p.output) == [2.0, True] for p in out.pairs)
    before, after = named["light"]
    assert before == after


def test_jails_that_preloaded_enough_are_kept(named):
    assert named["third"][0].status == "ok"
    assert named["total"] == named["after_second"]  # no jail started for the third batch


def test_scope_all_preloads_every_entry_as_before(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 1, "heavy_preload_scope": "all"})
    with Executor(settings) as ex:
        (out,) = generate_io_pairs(ex, [FunctionSpec(id="np", code=NUMPY_ONLY)], LIMITS)
        starts = [(k, set(p)) for k, p in ex.jail_preloads if k[1]]
    assert out.status == "ok"
    assert starts and all(set(settings.heavy_preload) <= preload for _, preload in starts)
    assert json.loads(out.pairs[0].output)[1] == sorted(HEAVY_NAMES)


def test_a_slot_takes_the_warm_jail_another_slot_left_instead_of_starting_one(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 2})
    numpy_job = Job(id="h", code="import numpy\ndef f():\n    return int(numpy.int64(3))", call="f")
    with Executor(settings) as ex:
        ex.run([numpy_job])  # slot 0 starts the first heavy jail
        # Slot 0 takes the light job, slot 1 the heavy one: the heavy jail is warm and free.
        light = Job(id="l", code="import time\ndef f():\n    time.sleep(1)\n    return 1", call="f")
        results = ex.run([light, numpy_job.model_copy(update={"id": "h2"})])
        heavy_starts = ex.jail_starts[(settings.hash_seed, True)]
    assert [r.output for r in results] == ["1", "3"]
    assert heavy_starts == 1


def test_a_re_run_with_little_heavy_work_starts_one_heavy_jail(sandbox_settings):
    settings = sandbox_settings.model_copy(update={"workers": 2})
    functions = [
        FunctionSpec(id=f"np{i}", code=NUMPY_ONLY.replace("* 2", f"* {i + 2}")) for i in range(2)
    ]
    with Executor(settings) as ex:
        outcomes = generate_io_pairs(ex, functions, LIMITS)
        starts = dict(ex.jail_starts)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert starts[(settings.hash_seed, True)] == 2  # the generation used both slots
    assert starts[(settings.hash_seed + 1, True)] == 1  # the quick re-run, one jail


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
    assert starts[(settings.hash_seed, True)] == 1

"""The io_pairs asset run by Dagster in real nsjail: random, flaky, failing and slow functions.

Determinism is a property of the function: one irreproducible pair drops all of them, compared
by the answers' value rule; a failing re-run keeps its own status; a job out of time keeps what
it made; a function whose every call raises is a code error. A second materialisation runs
again only the job a limit cut short (load may have decided it), a third runs nothing: the
replies come from the sandbox result cache, and the jails are still warm.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from codeio_dagster.assets.io_pairs import io_pairs
from codeio_dagster.config import load_config
from codeio_dagster.models import UnifiedFunctionRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sandbox.resources import NsjailSandbox
from tests.sandbox.records import stand_in, unified_function

GEN = "def input_generator():\n    return {'n': random.randint(0, 10**6)}\n"

FUNCTIONS = {
    # The case: a coin-flip output passed the old check whenever two re-runs agreed.
    "random": "import random\n\ndef main_solution(n):\n    return random.randint(0, 3)\n",
    # Differs between runs only within the answers' tolerance (1e-3 relative).
    "float_jitter": (
        "import random\n\ndef main_solution(n):\n    return 1000.0 + random.random() * 1e-4\n"
    ),
    # Raises only under the re-run's hash seed: the re-run's error, not "nondeterministic".
    "rerun_raises": (
        "import os, random\n\ndef main_solution(n):\n"
        "    if os.environ.get('PYTHONHASHSEED') == '1':\n"
        "        raise ValueError('only under the re-run hash seed')\n"
        "    return n\n"
    ),
    # Raises on half of its calls, the re-run's calls included.
    "flaky": (
        "import random\n\ndef main_solution(n):\n"
        "    if random.random() < 0.5:\n"
        "        raise RuntimeError('flaky')\n"
        "    return n\n"
    ),
    "always_raises": "import random\n\ndef main_solution(n):\n    raise KeyError('always')\n",
    # After three quick draws, generator and call each sleep just under the call timeout: the
    # draw would end after the job's wall clock, so it must be cut at the budget instead.
    "slow_later": (
        "import random, time\n_draws = [0]\n\ndef main_solution(n):\n"
        "    if _draws[0] > 3:\n        time.sleep(4.9)\n"
        "    return n\n\n"
        "def input_generator():\n    _draws[0] += 1\n"
        "    if _draws[0] > 3:\n        time.sleep(4.9)\n"
        "    return {'n': random.randint(0, 10**6)}\n"
    ),
    # After two pairs, a call that the per-call alarm cannot interrupt: the job dies at its
    # wall clock, and the pairs it made before are kept.
    "stuck_later": (
        "import random, signal, time\n_calls = [0]\n\ndef main_solution(n):\n"
        "    _calls[0] += 1\n"
        "    if _calls[0] > 2:\n"
        "        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
        "        time.sleep(60)\n"
        "    return n\n"
    ),
    # Modules CodeI/O-style code imports that are not in the standard library.
    "uses_yaml": (
        "import random\nimport six\nimport yaml\n\ndef main_solution(n):\n"
        "    return yaml.safe_load(six.text_type(f'a: {n}'))\n"
    ),
}


def _function(fid: str, code: str) -> UnifiedFunctionRecord:
    reference, _, generator = code.partition("def input_generator")
    generator = f"def input_generator{generator}" if generator else GEN
    return unified_function(fid, reference, generator)


@pytest.fixture(scope="module")
def runs(sandbox_settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("io_pairs_asset")
    config = tmp / "codeio.yaml"
    (tmp / "corpus").mkdir(exist_ok=True)  # the source folder must exist at load
    config.write_text(
        "sources:\n  - {name: t, kind: folder, options: {path: corpus}}\n"
        f"data_dir: {tmp / 'data'}\n"
        "io_pairs: {max_pairs: 16, time_budget_s: 2, max_generator_calls: 200}\n"
    )
    functions = to_frame([_function(f, c) for f, c in FUNCTIONS.items()], UnifiedFunctionRecord)

    sandbox = NsjailSandbox(settings={"workers": 2, "timeout_s": 5.0})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shards.name, ["s1"])
    results = []
    for _ in range(3):
        result = dg.materialize(
            [stand_in("unified_functions", functions), io_pairs],
            partition_key="s1",
            instance=instance,
            resources={
                "io_manager": dg.InMemoryIOManager(),
                "codeio": CodeioResource.from_config(load_config(config), str(config)),
                "sandbox": sandbox,
            },
        )
        assert result.success
        with sandbox.executor() as ex:
            counted = (ex.requests_run, sum(ex.jail_starts.values()))
        frame = result.output_for_node("io_pairs")
        results.append(({r["function_id"]: r for r in frame.iter_rows(named=True)}, counted))
    return results


@pytest.fixture(scope="module")
def rows(runs):
    return runs[0][0]


def _counts(row) -> dict:
    return json.loads(row["counts"])


def test_one_irreproducible_pair_drops_the_whole_function(rows):
    row = rows["random"]
    assert row["status"] == "nondeterministic" and row["pairs"] == []
    assert _counts(row)["dropped_nondeterministic"] == 16
    assert "determinism re-run" in row["detail"]


def test_rerun_outputs_are_compared_by_the_answer_value_rule(rows):
    row = rows["float_jitter"]
    assert row["status"] == "ok" and len(row["pairs"]) == 16


def test_a_failing_rerun_keeps_its_own_status_and_error(rows):
    for fid, error in (("rerun_raises", "ValueError"), ("flaky", "RuntimeError: flaky")):
        row = rows[fid]
        assert row["status"] == "code_error", fid
        assert row["pairs"] == [] and error in row["detail"]
        assert _counts(row)["dropped_nondeterministic"] == 0


def test_every_call_raising_is_a_code_error_found_early(rows):
    row = rows["always_raises"]
    assert row["status"] == "code_error" and "KeyError: 'always'" in row["detail"]
    counts = _counts(row)
    assert counts["main_solution_calls"] == counts["dropped_exception"] == 20
    assert counts["stopped_all_failing"] == 1


def test_drawing_stops_at_the_budget_and_keeps_the_pairs(rows):
    row = rows["slow_later"]
    assert row["status"] == "ok" and len(row["pairs"]) == 3
    assert _counts(row)["stopped_at_budget"] == 1


def test_a_job_killed_at_its_wall_clock_keeps_what_it_made(rows):
    row = rows["stuck_later"]
    assert row["status"] == "ok" and len(row["pairs"]) == 2
    assert _counts(row)["stopped_by_wall_clock"] == 1


def test_common_pure_python_modules_are_in_the_runtime(rows):
    row = rows["uses_yaml"]
    assert row["status"] == "ok", row["detail"]
    pair = row["pairs"][0]
    assert json.loads(pair["output"]) == {"a": json.loads(pair["input"])["n"]}


def test_a_rerun_repeats_only_what_a_limit_cut_short_and_starts_no_jail(runs):
    (first, (requests_1, starts_1)), (second, (requests_2, starts_2)), (third, counted_3) = runs
    assert requests_1 > 0
    # stuck_later's generation ended at its wall clock: run once more, then served.
    assert requests_2 == requests_1 + 1
    assert counted_3 == (requests_2, starts_2)  # every reply of the third came from the cache
    assert starts_2 == starts_1  # the jails of the first run were still warm
    assert second == first == third  # random functions included: the same data

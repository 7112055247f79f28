"""I/O-pair generation and input-prediction checks on hand-written functions, in real jails."""

from __future__ import annotations

import json

import pytest

from codeio_dagster.models import PredictionTaskRecord, ResponseRecord, to_frame
from codeio_dagster.sandbox import Executor, FunctionSpec, IOPairLimits, Job, generate_io_pairs
from codeio_dagster.tasks import InputPrediction
from codeio_dagster.verify import judge
from tests.sandbox.records import input_task, reply

GOOD = """
import random

def main_solution(n, word):
    return {"double": n * 2, "chars": sorted(set(word))}

def input_generator():
    return {"n": random.randint(0, 10**6), "word": random.choice(["abc", "hello", "zz"])}
"""

RANDOM_OUTPUT = """
import random

def main_solution(n):
    return n + random.random()

def input_generator():
    return {"n": random.randint(0, 1000)}
"""

HASH_ORDER = """
import random

def main_solution(words):
    return list(set(words))

def input_generator():
    return {"words": [random.choice("abcdefgh") * 3 for _ in range(6)]}
"""

TOO_LARGE = """
import random

def main_solution(n):
    return list(range(n))

def input_generator():
    return {"n": random.randint(50, 500)}
"""

GENERATOR_RAISES = """
def main_solution(n):
    return n

def input_generator():
    raise RuntimeError("generator is broken")
"""

FEW_INPUTS = """
import random

def main_solution(flag):
    return not flag

def input_generator():
    return {"flag": random.random() < 0.5}
"""

NONE_AND_ERRORS = """
import random

def main_solution(n):
    if n % 3 == 0:
        return None
    if n % 3 == 1:
        raise ValueError(n)
    return n

def input_generator():
    return {"n": random.randint(0, 10**6)}
"""

NUMPY_GEN = """
import numpy as np

def main_solution(xs):
    return float(np.sum(xs))

def input_generator():
    return {"xs": np.random.randint(0, 100, size=4).tolist()}
"""


@pytest.fixture(scope="module")
def outcomes(executor):
    functions = [
        FunctionSpec(id="good", code=GOOD),
        FunctionSpec(id="random_output", code=RANDOM_OUTPUT),
        FunctionSpec(id="hash_order", code=HASH_ORDER),
        FunctionSpec(id="too_large", code=TOO_LARGE),
        FunctionSpec(id="generator_raises", code=GENERATOR_RAISES),
        FunctionSpec(id="few_inputs", code=FEW_INPUTS),
        FunctionSpec(id="none_and_errors", code=NONE_AND_ERRORS),
        FunctionSpec(id="numpy_gen", code=NUMPY_GEN),
        FunctionSpec(id="syntax_error", code="def main_solution(:\n"),
    ]
    limits = IOPairLimits(max_generator_calls=200, time_budget_s=20)
    return {o.function_id: o for o in generate_io_pairs(executor, functions, limits, seed=3)}


def test_good_function_gives_ten_small_distinct_pairs(outcomes):
    good = outcomes["good"]
    assert good.status == "ok" and len(good.pairs) == 10
    inputs = [p.input for p in good.pairs]
    assert len(set(inputs)) == 10
    for pair in good.pairs:
        value = json.loads(pair.input)
        assert json.loads(pair.output)["double"] == 2 * value["n"]
    assert good.counts["generator_calls"] >= 10
    assert good.counts["dropped_nondeterministic"] == 0
    assert good.conversions == []


def test_random_output_is_dropped_as_nondeterministic(outcomes):
    out = outcomes["random_output"]
    assert out.status == "nondeterministic"
    assert out.pairs == [] and out.counts["dropped_nondeterministic"] == 10


def test_hash_seed_dependent_order_is_caught(outcomes):
    out = outcomes["hash_order"]
    assert out.counts["dropped_nondeterministic"] > 0


def test_too_large_outputs_are_dropped_with_the_limits_they_broke(outcomes):
    out = outcomes["too_large"]
    assert out.status == "too_large_output"
    assert out.counts["dropped_too_large_output"] > 0 and out.pairs == []
    assert "output over the pair limits" in out.error


def test_generator_that_raises(outcomes):
    out = outcomes["generator_raises"]
    assert out.status == "generator_error"
    # Twenty failures in a row and no success: the generator is broken, the other 180 draws
    # are not made.
    assert out.counts["generator_calls"] == out.counts["generator_errors"] == 20
    assert out.counts["stopped_all_failing"] == 1
    assert "RuntimeError: generator is broken" in out.error


def test_duplicate_inputs_are_dropped_and_two_pairs_suffice(outcomes):
    out = outcomes["few_inputs"]
    assert out.status == "ok" and len(out.pairs) == 2
    assert out.counts["dropped_duplicate_input"] == 198


def test_none_outputs_and_exceptions_are_counted(outcomes):
    out = outcomes["none_and_errors"]
    assert out.status == "ok"
    assert out.counts["dropped_none_output"] > 0 and out.counts["dropped_exception"] > 0
    assert all(json.loads(p.output) % 3 == 2 for p in out.pairs)


def test_code_that_does_not_load(outcomes):
    assert outcomes["syntax_error"].status == "code_error"
    assert "SyntaxError" in outcomes["syntax_error"].error


def test_seeding_is_reproducible_per_function_and_draw(executor, outcomes):
    functions = [FunctionSpec(id="good", code=GOOD), FunctionSpec(id="numpy_gen", code=NUMPY_GEN)]
    limits = IOPairLimits(max_generator_calls=200, time_budget_s=20)
    again = {o.function_id: o for o in generate_io_pairs(executor, functions, limits, seed=3)}
    for fid in ("good", "numpy_gen"):
        assert again[fid].pairs == outcomes[fid].pairs
    other = generate_io_pairs(executor, functions[:1], limits, seed=4)[0]
    assert other.pairs != outcomes["good"].pairs


def _judge_inputs(executor, code: str, given: str, predictions: dict) -> dict:
    """Input-prediction replies judged the way the verdicts asset judges them."""
    tasks = [input_task(tid, "f", given=given, expected="{}") for tid in predictions]
    replies = [
        reply(tid, f"```json\n{json.dumps({'input': value})}\n```")
        for tid, value in predictions.items()
    ]

    def run_inputs(runs):
        return executor.run([Job(id=r.task_id, code=r.code, input=r.predicted_input) for r in runs])

    frame = judge(
        to_frame(replies, ResponseRecord),
        to_frame(tasks, PredictionTaskRecord),
        kinds={"input_prediction": InputPrediction()},
        code_by_function={"f": code},
        run_inputs=run_inputs,
    )
    return {row["task_id"]: row for row in frame.iter_rows(named=True)}


def test_input_predictions_are_verified_by_running_the_code(executor):
    code = "def main_solution(a, b):\n    return a * b\n"
    verdicts = _judge_inputs(
        executor,
        code,
        "12",
        {
            "right": {"a": 3, "b": 4},
            "other": {"a": 2, "b": 6},
            "close": {"a": 1.0, "b": 12.005},
            "wrong": {"a": 3, "b": 3},
            "bad_key": {"c": 1},
            "not_obj": [3, 4],
        },
    )
    assert verdicts["right"]["status"] == "correct" and verdicts["right"]["actual"] == "12"
    assert verdicts["other"]["status"] == "correct"  # another feasible input is right too
    assert verdicts["close"]["status"] == "correct"  # 12.005 is within 1e-3 of 12
    assert verdicts["wrong"]["status"] == "wrong" and verdicts["wrong"]["actual"] == "9"
    assert verdicts["bad_key"]["status"] == "exec_error"
    assert "TypeError" in verdicts["bad_key"]["feedback"]
    assert verdicts["not_obj"]["status"] == "missing_key"  # the kind refuses it, nothing runs
    loop = "def main_solution(x):\n    while True:\n        pass\n"
    assert _judge_inputs(executor, loop, "1", {"loop": {"x": 1}})["loop"]["status"] == "timeout"


# Jailed code can find the shared reply buffer among its own process's objects and write a reply
# of its choosing; a malformed one must become one exec_error, not abort the whole batch.
_FORGER = """
import gc, mmap, os, struct

def main_solution(x):
    body = b'{"status": "ok", "output": "not json {"}'
    for obj in gc.get_objects():
        if isinstance(obj, mmap.mmap):
            obj[4 : 4 + len(body)] = body
            obj[:4] = struct.pack("=I", len(body))
    os._exit(0)
"""


def test_forged_reply_to_an_input_check_is_an_exec_error(executor):
    forged = _judge_inputs(executor, _FORGER, "1", {"forged": {"x": 1}})["forged"]
    assert forged["status"] == "exec_error" and "invalid_output" in forged["feedback"]
    honest = "def main_solution(x):\n    return x\n"
    assert _judge_inputs(executor, honest, "1", {"honest": {"x": 1}})["honest"]["status"] == (
        "correct"
    )


STATEFUL = """
import random

_seen = []

def main_solution(n):
    _seen.append(n)
    return len(_seen)

def input_generator():
    return {"n": random.randint(0, 10**6)}
"""


def test_rerun_is_one_job_per_function_with_a_fresh_process_per_call(executor):
    # A function whose output depends on the calls before it agrees with itself when its pairs
    # are re-run in order in one process; each call in a fresh process shows the dependence.
    functions = [FunctionSpec(id="stateful", code=STATEFUL), FunctionSpec(id="good", code=GOOD)]
    before = executor.requests_run
    outcomes = {o.function_id: o for o in generate_io_pairs(executor, functions, seed=3)}
    assert outcomes["stateful"].status == "nondeterministic"
    assert outcomes["stateful"].counts["dropped_nondeterministic"] == 10
    assert outcomes["good"].status == "ok" and len(outcomes["good"].pairs) == 10
    # One generation job and one re-run job per function, not one job per pair.
    assert executor.requests_run - before == 4


SLOW_RANDOM = """
import random, time

def main_solution(n):
    time.sleep(0.3)
    return random.randint(0, 3)

def input_generator():
    return {"n": random.randint(0, 10**6)}
"""


def test_a_slow_function_is_rerun_in_chunks_and_judged_as_a_whole(executor):
    # Ten calls of 0.3 s: about a second of work per job, so its calls spread over the workers;
    # any irreproducible pair in any chunk still drops the whole function.
    functions = [FunctionSpec(id="slow_random", code=SLOW_RANDOM)]
    before = executor.requests_run
    (out,) = generate_io_pairs(executor, functions, seed=3)
    assert out.status == "nondeterministic" and out.pairs == []
    assert out.counts["dropped_nondeterministic"] == 10
    # Generation, then chunks of at most 3 calls (each call took at least 0.3 s).
    assert executor.requests_run - before >= 1 + 4


SLOW_GOOD = """
import random, time

def main_solution(n):
    time.sleep(0.25)
    return n * 2

def input_generator():
    return {"n": random.randint(0, 10**6)}
"""


def recording(run_requests, arrivals: list[str], calls: list[int] | None = None):
    """run_requests that appends each reply's request id to `arrivals` as it arrives (and each
    call's request count to `calls`), follow-ups included."""

    def wrapped(requests, **kwargs):
        if calls is not None:
            calls.append(len(requests))
        ids = {}

        def follow_up(i, reply):
            more = kwargs["follow_up"](i, reply)
            for seed_and_req in more:
                ids[len(requests) + len(ids)] = seed_and_req[1]["id"]
            return more

        def on_reply(i, reply):
            arrivals.append(requests[i][1]["id"] if i < len(requests) else ids[i])

        return run_requests(requests, **{**kwargs, "follow_up": follow_up, "on_reply": on_reply})

    return wrapped


def test_a_quick_functions_re_run_goes_while_a_slow_one_still_generates(executor, monkeypatch):
    # Generation and re-run are one batch: the quick function's re-run takes the jail its
    # generation freed, instead of waiting for the slow generation (ten calls of 0.25 s).
    functions = [FunctionSpec(id="slow", code=SLOW_GOOD), FunctionSpec(id="quick", code=GOOD)]
    arrivals: list[str] = []
    calls: list[int] = []
    monkeypatch.setattr(executor, "run_requests", recording(executor.run_requests, arrivals, calls))
    outcomes = {o.function_id: o for o in generate_io_pairs(executor, functions, seed=5)}
    assert [outcomes[f].status for f in ("slow", "quick")] == ["ok", "ok"]
    assert calls == [2]  # one batch for generation and re-run
    assert arrivals.index("quick#0") < arrivals.index("slow")
    assert arrivals[-1].startswith("slow#")  # its own re-run comes after its generation


SLOWISH = SLOW_GOOD.replace("0.25", "0.05")


def test_the_re_run_of_a_long_first_pass_goes_before_cheap_re_runs_queued_ahead(
    sandbox_settings,
):
    # One jail slot, so the order of replies is the order jobs were sent: the first passes
    # (cost unknown) in order, then the re-runs longest first by their first pass's duration.
    # The slow function's first pass (ten calls of 0.05 s) ends after two quick ones', so its
    # re-run is queued behind theirs; it is still sent first.
    functions = [
        FunctionSpec(id="quick1", code=GOOD),
        FunctionSpec(id="quick2", code=GOOD),
        FunctionSpec(id="slow", code=SLOWISH),
        FunctionSpec(id="quick3", code=GOOD),
    ]
    arrivals: list[str] = []
    with Executor(sandbox_settings.model_copy(update={"workers": 1})) as ex:
        ex.run_requests = recording(ex.run_requests, arrivals)
        outcomes = generate_io_pairs(ex, functions, seed=5)
    assert [o.status for o in outcomes] == ["ok"] * 4
    assert arrivals[:4] == ["quick1", "quick2", "slow", "quick3"]
    # (On a very slow machine the slow re-run may come in chunks: all of them go first.)
    assert arrivals[4] == "slow#0"
    assert all(a.startswith("slow#") for a in arrivals[4:-3])
    # Among the cheap ones the order follows their measured milliseconds: not asserted.
    assert sorted(arrivals[-3:]) == ["quick1#0", "quick2#0", "quick3#0"]

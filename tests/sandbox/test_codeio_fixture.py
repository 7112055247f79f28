"""Re-run the CodeI/O authors' 4,514 stored I/O pairs in the sandbox and explain every mismatch."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from codeio_dagster.sandbox import Job, canonical_json, outputs_equal

# Modules the authors' machine had but our runtime deliberately does not (DESIGN: stdlib plus
# numpy, scipy, sympy, networkx, pandas); GUI toolkits are absent from a headless runtime.
_ABSENT_MODULES = ("nltk", "tkinter", "Crypto", "matplotlib", "sklearn", "torch", "cv2", "PIL")
_CLOCK_OR_ENTROPY = re.compile(r"\b(random|time|datetime|uuid|secrets|os\.urandom)\b")

# Probes run after a mismatch: does main_solution change its arguments in place, and does
# replaying every stored input in one process, in order, as the authors' scripts did (module-level
# caches and counters then carry over), give the stored outputs?
_PROBE_WRAPPER = """

def __codeio_probe(kwargs):
    import copy
    before = copy.deepcopy(kwargs)
    out = main_solution(**kwargs)
    return {"out": out, "mutated": kwargs != before}


def __codeio_replay(inputs):
    out = []
    for kwargs in inputs:
        try:
            out.append(main_solution(**kwargs))
        except Exception as exc:
            out.append("<exception %s>" % type(exc).__name__)
    return out
"""


# Mismatches reviewed by hand. Each of these functions overwrites its argument while computing
# (visited marks, pops), and the authors stored the argument as it was *after* the call; run on
# that already-consumed value, the function rightly gives another answer. No probe can show it,
# because the stored value is a fixed point: calling again no longer changes it.
_CONSUMED = "consumes its argument in place; the stored input is the leftover (reviewed)"
_REVIEWED: dict[int, str] = {
    14: _CONSUMED,  # BFS fills `grid` with 1s; stored grids are all 1s -> -1
    23: _CONSUMED,  # heapq pops `ropes` down to one element; stored [x] -> 0
    124: _CONSUMED,  # DFS marks land "X" in `grid`; no "1" left -> 0
    171: _CONSUMED,  # sinks islands, "1" -> "0", in `grid`
    367: _CONSUMED,  # pops every list out of `lists`; stored [] -> None
    455: _CONSUMED,  # rots oranges in `grid` (marks 3, 4, ...)
}


@pytest.fixture(scope="module")
def parsed_rows(shared_fixtures):
    path = shared_fixtures / "codeio_rawcode_1k_parsed.jsonl"
    return [json.loads(line) for line in path.open()]


def _agrees(result, expected) -> bool:
    return result.status == "ok" and outputs_equal(json.loads(result.output), expected)


def test_stored_pairs_reproduce_or_are_explained(executor, parsed_rows):
    jobs, where = [], []
    for ri, row in enumerate(parsed_rows):
        for pi, io in enumerate(row["ios"]):
            jobs.append(Job(id=f"{ri}:{pi}", code=row["refcode"], input=io["input"]))
            where.append((ri, pi))
    assert len(jobs) == 4514
    results = executor.run(jobs)
    disagree = [
        (ri, pi, r)
        for (ri, pi), r in zip(where, results, strict=True)
        if not _agrees(r, parsed_rows[ri]["ios"][pi]["output"])
    ]

    reasons: Counter[str] = Counter()
    todo = []
    for ri, pi, result in disagree:
        expected = parsed_rows[ri]["ios"][pi]["output"]
        if result.status == "exception" and any(
            f"'{m}" in (result.error or "") for m in _ABSENT_MODULES
        ):
            reasons["imports a module outside the runtime"] += 1
        elif result.status == "ok" and result.output == canonical_json(expected)[0]:
            # Same text, but the rule says NaN/inf never compare equal.
            reasons["identical non-finite float (never equal by the CodeI/O rule)"] += 1
        elif _CLOCK_OR_ENTROPY.search(parsed_rows[ri]["refcode"]):
            reasons["uses randomness or the clock"] += 1
        else:
            todo.append((ri, pi, result))

    # Second opinion on each remaining mismatch, in one parallel batch: the call again under
    # another hash seed, noting whether main_solution changed its arguments in place.
    probes = executor.run(
        [
            Job(
                id=f"probe {ri}:{pi}",
                code=parsed_rows[ri]["refcode"] + _PROBE_WRAPPER,
                call="__codeio_probe",
                input={"kwargs": parsed_rows[ri]["ios"][pi]["input"]},
                hash_seed=11,
            )
            for ri, pi, _ in todo
        ]
    )
    still = []
    for (ri, pi, result), probe in zip(todo, probes, strict=True):
        row = parsed_rows[ri]
        seen = json.loads(probe.output) if probe.status == "ok" else None
        again = canonical_json(seen["out"])[0] if seen else f"{probe.status}"
        if result.status != probe.status or (result.status == "ok" and again != result.output):
            reasons["varies between runs (hash seed or other state)"] += 1
        elif seen and seen["mutated"]:
            reasons["mutates its arguments (the authors stored the input after the call)"] += 1
        else:
            still.append((ri, pi, result))

    # Last: replay each remaining function's stored inputs in one process, in order.
    functions = sorted({ri for ri, _, _ in still})
    replays = dict(
        zip(
            functions,
            executor.run(
                [
                    Job(
                        id=f"replay {ri}",
                        code=parsed_rows[ri]["refcode"] + _PROBE_WRAPPER,
                        call="__codeio_replay",
                        input={"inputs": [io["input"] for io in parsed_rows[ri]["ios"]]},
                        timeout_s=60,
                    )
                    for ri in functions
                ]
            ),
            strict=True,
        )
    )
    unexplained = []
    for ri, pi, result in still:
        expected = parsed_rows[ri]["ios"][pi]["output"]
        replay = replays[ri]
        if replay.status == "ok" and outputs_equal(json.loads(replay.output)[pi], expected):
            reasons["state carried between calls in the authors' single process"] += 1
        elif ri in _REVIEWED:
            reasons[_REVIEWED[ri]] += 1
        else:
            unexplained.append(
                (ri, pi, result.status, (result.output or result.error or "")[:200], expected)
            )
    for item in unexplained:
        print("UNEXPLAINED", item)

    agree = len(jobs) - len(disagree)
    print(f"\nCodeI/O fixture: {agree}/{len(jobs)} stored pairs reproduced; mismatches by reason:")
    for reason, n in reasons.most_common():
        print(f"  {n:4d}  {reason}")
    assert not unexplained, f"unexplained mismatches on deterministic code: {unexplained[:5]}"
    assert agree >= 4000

"""CRUXEval's 800 functions through `codeio sandbox batch`: every output must match.

CRUXEval writes inputs and outputs as Python literals (tuples, sets, bytes, single quotes), and
13 inputs are expressions, none of which JSON can carry. The adaptation: each job's code is the
function plus a wrapper that calls it with the input *as Python source*, so the call is exactly
CRUXEval's. Two jobs per sample check two things:

* ``repr`` job: the wrapper returns ``repr(f(...))``; its literal must equal the expected literal
  under Python ``==`` (the fixture's own check). 800/800.
* ``value`` job: the wrapper returns ``f(...)`` itself, which the sandbox turns into canonical
  JSON; it must equal ``canonical_json`` of the expected literal. Here the JSON policy merges
  values Python keeps apart: tuples become lists, sets sorted lists, bytes strings, and
  non-string dict keys strings, so e.g. ``(1, 2)`` and ``[1, 2]`` are one JSON value. The test
  counts those samples (the conversions are reported with the result) rather than hiding them.
  A value JSON cannot hold at all (a dict with both ``2`` and ``"2"`` as keys) must come back as
  ``invalid_output``, never as a silently merged dict.
"""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from codeio_dagster.sandbox import canonical_json

_WRAPPER = """

def __cruxeval_repr():
    return repr(f({input}))


def __cruxeval_value():
    return f({input})
"""


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        # A handful of outputs hold inf/nan, which literal_eval does not accept.
        return eval(text, {"__builtins__": {}}, {"inf": math.inf, "nan": math.nan})  # noqa: S307


@pytest.fixture(scope="module")
def cruxeval(shared_fixtures):
    return [json.loads(line) for line in (shared_fixtures / "cruxeval.jsonl").open()]


def test_cruxeval_800_through_cli_batch(cruxeval, sandbox_settings, tmp_path):
    assert len(cruxeval) == 800
    jobs = tmp_path / "jobs.jsonl"
    with jobs.open("w") as out:
        for row in cruxeval:
            code = row["code"] + _WRAPPER.format(input=row["input"])
            for kind in ("repr", "value"):
                job = {"id": f"{row['id']}/{kind}", "code": code, "call": f"__cruxeval_{kind}"}
                out.write(json.dumps({**job, "input": {}}) + "\n")
    codeio = Path(sys.executable).parent / "codeio"
    proc = subprocess.run(
        [str(codeio), "sandbox", "--workers", "2", "batch", str(jobs)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in results] == [
        f"{row['id']}/{kind}" for row in cruxeval for kind in ("repr", "value")
    ]
    assert "1600/1600" in proc.stderr  # the progress bar went to stderr

    literal_ok, json_ok, policy_merged = 0, 0, []
    failures = []
    for row, rep, val in zip(cruxeval, results[0::2], results[1::2], strict=True):
        expected = _literal(row["output"])
        if rep["status"] == "ok" and _literal(json.loads(rep["output"])) == expected:
            literal_ok += 1
        else:
            failures.append((row["id"], "repr", rep["status"], rep["output"], row["output"]))
        try:
            want_text, conversions = canonical_json(expected)
        except ValueError:
            # Not representable (e.g. keys 2 and "2" in one dict): the job must say so too.
            want_text, conversions = None, ["not representable"]
            if val["status"] == "invalid_output":
                json_ok += 1
                policy_merged.append((row["id"], conversions))
                continue
        if val["status"] == "ok" and val["output"] == want_text:
            json_ok += 1
            if conversions:
                policy_merged.append((row["id"], conversions))
        else:
            failures.append((row["id"], "value", val["status"], val["output"], want_text))
    print(
        f"\nCRUXEval: {literal_ok}/800 equal as Python literals, {json_ok}/800 equal as canonical "
        f"JSON; {len(policy_merged)} of them only after JSON conversions "
        f"({sorted({c for _, cs in policy_merged for c in cs})})"
    )
    assert not failures, failures[:5]
    assert literal_ok == json_ok == 800

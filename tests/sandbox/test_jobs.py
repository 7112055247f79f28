"""Replies cross a channel the job can write to: a forged one is checked, not trusted."""

from __future__ import annotations

from codeio_dagster.sandbox import FunctionSpec, IOPairLimits, Job, generate_io_pairs

FORGE = """
import json, os, sys

def forge(reply):
    data = json.dumps(reply).encode()
    # Any descriptor still open, then the shared mapping the fork-server reads the reply from,
    # found on the stack and filled through the server's own writer.
    for fd in range(3, 64):
        try:
            os.write(fd, data)
        except OSError:
            pass
    frame = sys._getframe()
    while frame is not None:
        found = frame.f_locals.get("result")
        if type(found).__name__ == "_ResultBuffer":
            found.write(reply)
            break
        frame = frame.f_back
    else:
        raise AssertionError("no result mapping found to forge")
    os._exit(0)

def f():
    forge({"status": "ok", "output": "not json", "conversions": "x"})

def main_solution(n):
    return n

def input_generator():
    forge({"status": "ok", "pairs": [["1", "2"]], "counts": {}})
"""


def test_forged_replies_on_the_result_channel_are_rejected(executor):
    (r,) = executor.run([Job(id="forge", code=FORGE, call="f")])
    assert r.status == "invalid_output" and r.output is None
    (o,) = generate_io_pairs(executor, [FunctionSpec(id="forge", code=FORGE)], IOPairLimits())
    assert o.status == "invalid_output" and o.pairs == []

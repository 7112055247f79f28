"""The I/O lint of unified functions: what it flags (with what and where) and what it lets be."""

from __future__ import annotations

import pytest

from codeio_dagster.io_lint import find_forbidden_io


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (
            "def main_solution(x):\n    print(x)\n    return x\n",
            "print() call at Main Function line 2",
        ),
        ("def main_solution(x):\n    return input()\n", "input() call"),
        (
            "def main_solution(p):\n    with open(p) as f:\n        return f.read()\n",
            "open() call at Main Function line 2",
        ),
        ("import sys\ndef main_solution(x):\n    sys.exit(1)\n", "sys.exit() call"),
        ("def main_solution(x):\n    exit()\n", "exit() call"),
        ("def main_solution(x):\n    quit()\n", "quit() call"),
        ("import os\ndef main_solution(c):\n    os.system(c)\n", "os.system() call"),
        ("from os import system as run\ndef main_solution(c):\n    run(c)\n", "run() call"),
        ("import subprocess\ndef main_solution(c):\n    return 1\n", "import of subprocess"),
        (
            "import matplotlib.pyplot as plt\ndef main_solution(x):\n    return x\n",
            "import of matplotlib.pyplot (plotting)",
        ),
        ("import socket\ndef main_solution(x):\n    return x\n", "import of socket (network)"),
        ("import requests\ndef main_solution(u):\n    return u\n", "import of requests (network)"),
        (
            "from urllib.request import urlopen\ndef main_solution(u):\n    return u\n",
            "import of urllib.request",
        ),
        ("import sys\ndef main_solution():\n    return sys.stdin.read()\n", "use of sys.stdin"),
        (
            "import pandas as pd\ndef main_solution(p):\n    return pd.read_csv(p).shape[0]\n",
            "pd.read_csv() call",
        ),
        ("import json\ndef main_solution(p):\n    json.dump({}, p)\n", "json.dump() call"),
        ("def main_solution(df):\n    df.to_csv('x.csv')\n", ".to_csv() call"),
    ],
)
def test_forbidden_io_is_found_with_what_and_where(code, needle):
    findings = find_forbidden_io(code, where="Main Function")
    assert any(needle in f for f in findings), findings


def test_harmless_lookalikes_are_not_forbidden():
    code = (
        "import json\nimport os\n\ndef main_solution(s):\n"
        "    d = json.loads(s)\n    name = os.path.join('a', 'b')\n"
        "    return json.dumps(d) + name\n"
    )
    assert find_forbidden_io(code) == []


def test_the_authors_unified_functions_mostly_pass(shared_fixtures):
    import json

    lines = (shared_fixtures / "codeio_rawcode_1k_parsed.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    flagged = [r for r in rows if find_forbidden_io(r["refcode"])]
    # Their pipeline kept a handful of functions that do print or plot; real refactors that
    # follow the instructions must nearly all pass.
    assert 0 < len(flagged) <= len(rows) * 0.02
